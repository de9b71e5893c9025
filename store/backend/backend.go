// Package backend opens a store.Store from a --clickhouse DSN, picking the transport by scheme.
package backend

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"

	"github.com/gpufleet/gpufleet/store"
	"github.com/gpufleet/gpufleet/store/chdb"
	"github.com/gpufleet/gpufleet/store/chserver"
)

// DefaultDatabase is used when the DSN names none.
const DefaultDatabase = "gpufleet"

// Options tune Open. The zero value works.
type Options struct {
	// LibCHDB is the path of libchdb.so for chdb:// DSNs; empty searches chdb.Candidates().
	LibCHDB string
	// TLS, when set, is used for clickhouse:// DSNs (see chserver.Open).
	TLS *tls.Config
}

// Target is a parsed DSN.
type Target struct {
	Scheme   string // "clickhouse" or "chdb"
	Dir      string // chdb data directory
	Database string
	DSN      string
}

const dsnHelp = "use clickhouse://user:password@host:9000/database or chdb:///path/to/dir[?database=name]"

// Parse checks a DSN without connecting.
func Parse(dsn string) (Target, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return Target{}, fmt.Errorf("--clickhouse %q is not a URL: %s", dsn, dsnHelp)
	}
	t := Target{Scheme: u.Scheme, DSN: dsn}
	switch u.Scheme {
	case "clickhouse":
		if u.Host == "" {
			return Target{}, fmt.Errorf("--clickhouse %q names no host: %s", dsn, dsnHelp)
		}
		t.Database = strings.Trim(u.Path, "/")
	case "chdb":
		t.Dir = u.Path
		if u.Host != "" { // chdb://relative/dir
			t.Dir = u.Host + u.Path
		}
		if t.Dir == "" {
			return Target{}, fmt.Errorf("--clickhouse %q names no data directory: %s", dsn, dsnHelp)
		}
		t.Database = u.Query().Get("database")
	default:
		return Target{}, fmt.Errorf("--clickhouse %q: unsupported scheme %q: %s", dsn, u.Scheme, dsnHelp)
	}
	if t.Database == "" {
		t.Database = DefaultDatabase
	}
	if err := store.CheckIdent("--clickhouse database", t.Database); err != nil {
		return Target{}, err
	}
	return t, nil
}

// Open parses dsn and connects with the matching transport.
func Open(ctx context.Context, dsn string, opts Options) (store.Store, error) {
	t, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	if t.Scheme == "chdb" {
		return chdb.Open(t.Dir, t.Database, opts.LibCHDB)
	}
	return chserver.Open(ctx, dsn, opts.TLS)
}
