//go:build nochdb

package backend

import (
	"errors"

	"github.com/gpufleet/gpufleet/internal/store"
)

// HasCHDB says whether this build can open chdb:// DSNs. Builds tagged nochdb (the Grafana
// plugin's release binaries) leave the embedded engine out: loading libchdb.so needs the C
// runtime's dynamic loader, which a static binary on Alpine-based Grafana images does not have.
const HasCHDB = false

var errNoCHDB = errors.New("this build has no embedded chDB mode (built with -tags nochdb): use a ClickHouse server address, or a build without the tag on a glibc system")

func openCHDB(string, string, string) (store.Store, error) { return nil, errNoCHDB }

func openCHDBReader(string, string, string, store.Limits) (store.Store, error) { return nil, errNoCHDB }
