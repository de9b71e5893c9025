// Package backend opens a store.Store from a ClickHouse DSN, picking the transport by scheme.
package backend

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/backend/redact"
	"github.com/gpufleet/gpufleet/internal/store/chserver"
)

// DefaultDatabase is used when the DSN names none.
const DefaultDatabase = "gpufleet"

// Options tune Open. The zero value works.
type Options struct {
	// LibCHDB is the path of libchdb.so for chdb:// DSNs; empty searches store/chdb's Candidates.
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

// Redact returns dsn fit for a log line or an error: the user-info password becomes "xxxxx",
// password=, token=, secret-like and URL-valued query parameters are masked, and input that does
// not parse is reduced to its scheme ("clickhouse://<unparsable>") or to "<unparsable DSN>".
func Redact(dsn string) string { return redact.DSN(dsn) }

// Parse checks a DSN without connecting. Its errors name the DSN redacted, never its password.
func Parse(dsn string) (Target, error) {
	if dsn == "" {
		return Target{}, fmt.Errorf("clickhouse DSN is empty: %s", dsnHelp)
	}
	shown := strconv.Quote(Redact(dsn))
	if Redact(dsn) == redact.Unparsable {
		shown = "(not shown: it may hold a password)"
	}
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		// url.Parse's error quotes the whole input, and its reason can quote part of a password.
		hint := ""
		if strings.Contains(dsn, "@") {
			hint = " (percent-encode special characters in the user name and password)"
		}
		return Target{}, fmt.Errorf("clickhouse DSN %s is not a URL%s: %s", shown, hint, dsnHelp)
	}
	t := Target{Scheme: u.Scheme, DSN: dsn}
	switch u.Scheme {
	case "clickhouse":
		if redact.Ambiguous(dsn) {
			// The parsers disagree on where such a password ends, and the part they take for
			// the host or the database would be echoed by later errors.
			return Target{}, fmt.Errorf("clickhouse DSN %s: percent-encode '/', '?', '#' and '@' in the user name and password (%%2F, %%3F, %%23, %%40), and '@' in parameter values: %s", shown, dsnHelp)
		}
		if u.Host == "" {
			return Target{}, fmt.Errorf("clickhouse DSN %s names no host: %s", shown, dsnHelp)
		}
		t.Database = strings.Trim(u.Path, "/")
	case "chdb":
		t.Dir = u.Path
		if u.Host != "" { // chdb://relative/dir
			t.Dir = u.Host + u.Path
		}
		if t.Dir == "" {
			return Target{}, fmt.Errorf("clickhouse DSN %s names no data directory: %s", shown, dsnHelp)
		}
		t.Database = u.Query().Get("database")
	default:
		return Target{}, fmt.Errorf("clickhouse DSN %s: unsupported scheme %q: %s", shown, u.Scheme, dsnHelp)
	}
	if t.Database == "" {
		t.Database = DefaultDatabase
	}
	if err := store.CheckIdent("clickhouse DSN database", t.Database); err != nil {
		return Target{}, err
	}
	return t, nil
}

// OpenCHDB opens the embedded engine on dir for writing, as a chdb:// DSN naming dir and db would;
// for callers that hold a directory rather than a DSN (a path need not survive URL parsing). In a
// build tagged nochdb it returns the error that says so, and the binary links no loader.
func OpenCHDB(dir, db, lib string) (store.Store, error) { return openCHDB(dir, db, lib) }

// OpenCHDBReader is OpenCHDB's read-only session with lim's limits, as OpenReader opens.
func OpenCHDBReader(dir, db, lib string, lim store.Limits) (store.Store, error) {
	return openCHDBReader(dir, db, lib, lim)
}

// Open parses dsn and connects with the matching transport.
func Open(ctx context.Context, dsn string, opts Options) (store.Store, error) {
	t, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	if t.Scheme == "chdb" {
		return openCHDB(t.Dir, t.Database, opts.LibCHDB)
	}
	return chserver.Open(ctx, dsn, opts.TLS)
}

// OpenReader parses dsn and opens a store for the read paths (raw SQL, the HTTP API, Grafana): a
// session that is read-only with lim's limits, which creates no directory and no database.
func OpenReader(ctx context.Context, dsn string, opts Options, lim store.Limits) (store.Store, error) {
	t, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	if t.Scheme == "chdb" {
		return openCHDBReader(t.Dir, t.Database, opts.LibCHDB, lim)
	}
	return chserver.OpenReader(ctx, dsn, opts.TLS, lim)
}
