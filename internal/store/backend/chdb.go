//go:build !nochdb

package backend

import (
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
)

// HasCHDB says whether this build can open chdb:// DSNs.
const HasCHDB = true

func openCHDB(dir, db, lib string) (store.Store, error) { return chdb.Open(dir, db, lib) }

func openCHDBReader(dir, db, lib string, lim store.Limits) (store.Store, error) {
	return chdb.OpenReader(dir, db, lib, lim)
}
