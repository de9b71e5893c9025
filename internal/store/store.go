// Package store is gpufleet's one interface to ClickHouse. Two transports implement it with the
// same SQL and the same columnar Block: store/chserver (clickhouse-go v2, native protocol, for a
// server) and store/chdb (the ClickHouse engine in-process, for the demo, labs and tests).
package store

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Store runs SQL and columnar inserts against one ClickHouse database.
type Store interface {
	// Database is the database every gpufleet table lives in.
	Database() string
	// Exec runs a statement that returns no rows (DDL, INSERT ... SELECT).
	Exec(ctx context.Context, sql string) error
	// Query runs a SELECT and returns its rows.
	Query(ctx context.Context, sql string) (*Result, error)
	// QueryWith runs a SELECT whose {name:Type} placeholders take their values from params, which
	// the server parses and types itself: user input never becomes SQL text.
	QueryWith(ctx context.Context, sql string, params Params) (*Result, error)
	// Insert appends the block to table. A non-empty dedupToken makes a retried insert of the same
	// block a no-op (ClickHouse insert_deduplication_token).
	Insert(ctx context.Context, table string, b *Block, dedupToken string) error
	Close() error
}

// Params are query parameter values by name, in ClickHouse's text form for the placeholder's type
// (an Array(String) value is written like ['a','b']; FormatArray builds one).
type Params map[string]string

// Names returns the parameter names, sorted.
func (p Params) Names() []string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// FormatArray writes strings as an Array(String) parameter value.
func FormatArray(vs []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(QuoteString(v))
	}
	b.WriteByte(']')
	return b.String()
}

// Result is a query's rows. Values are int64, uint64, float64, string or nil (NULL);
// other ClickHouse types arrive as their text form.
type Result struct {
	Columns []string
	// Types are the columns' ClickHouse types as the engine names them (Nullable(Float64),
	// DateTime64(3, 'UTC'), …): what a result's consumers type fields by, even with no rows.
	Types []string
	Rows  [][]any
	// RowsRead is how many rows the engine scanned to answer, when it reports it.
	RowsRead uint64
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// CheckIdent accepts names safe to splice into SQL unquoted: letters, digits, underscore.
func CheckIdent(what, name string) error {
	if !identRE.MatchString(name) {
		return fmt.Errorf("%s %q: use letters, digits and underscore only, starting with a letter", what, name)
	}
	return nil
}

// Table returns db.table for SQL; both parts must have passed CheckIdent.
func Table(db, table string) string { return db + "." + table }

// QuoteString returns s as a ClickHouse string literal.
func QuoteString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}
