package chserver

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gpufleet/gpufleet/store"
)

// readerSettings are sent with every query of a reader store.
type readerSettings struct {
	read    clickhouse.Settings // the limits, then readonly = 1
	explain clickhouse.Settings // readonly = 2: EXPLAIN as a subquery needs it, and it still cannot write
}

// OpenReader connects like Open for the read paths: every query carries lim's settings and
// readonly = 1, and unqualified names resolve in the DSN's database. Use it with a user that has
// only SELECT on that database (deploy/clickhouse/reader.sql): the grants are the server's own
// enforcement, the settings the client's.
func OpenReader(ctx context.Context, dsn string, tlsConfig *tls.Config, lim store.Limits) (*Store, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	rs := &readerSettings{read: clickhouse.Settings{}, explain: clickhouse.Settings{"readonly": 2}}
	for _, st := range lim.Settings() {
		rs.read[st.Name] = clickhouse.CustomSetting{Value: strings.Trim(st.Value, "'")}
	}
	return open(ctx, dsn, tlsConfig, rs)
}

// ParseSelect implements store.Parser with the same two statements as chDB: formatQuery of the
// statement as a bound parameter, then EXPLAIN AST of the canonical text as a subquery.
func (s *Store) ParseSelect(ctx context.Context, sql string, params store.Params) (canonical, tree string, err error) {
	pctx := ctx
	if s.reader != nil {
		pctx = clickhouse.Context(ctx, clickhouse.WithSettings(s.reader.explain))
	}
	r, err := s.query(pctx, store.FormatQuerySQL, store.Params{"gf_statement": store.StringParam(sql)}, false)
	if err != nil {
		return "", "", err
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 1 {
		return "", "", errors.New("parse: formatQuery gave no single value")
	}
	canonical, _ = r.Rows[0][0].(string)
	explain, err := store.ExplainASTSQL(canonical)
	if err != nil {
		return "", "", err
	}
	if r, err = s.query(pctx, explain, params, false); err != nil {
		return "", "", err
	}
	lines := make([]string, 0, len(r.Rows))
	for _, row := range r.Rows {
		if len(row) == 1 {
			line, _ := row[0].(string)
			lines = append(lines, line)
		}
	}
	return canonical, strings.Join(lines, "\n"), nil
}
