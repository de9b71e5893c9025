package chserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/gpufleet/gpufleet/internal/store"
)

// readerSettings are sent with every query of a reader store.
type readerSettings struct {
	read    clickhouse.Settings // the limits, and readonly = 1 for a user that may write
	explain clickhouse.Settings // readonly = 2 for such a user: EXPLAIN as a subquery needs it, and it still cannot write
}

// OpenReader connects like Open for the read paths, and unqualified names resolve in the DSN's
// database. What each query carries depends on the user's own readonly setting:
//   - 0 (a user that may write): lim's settings and readonly = 1, so the session cannot write;
//   - 2 (deploy/clickhouse/reader.sql's profile): lim's settings, within the profile's ceilings;
//   - 1: refused, because ClickHouse then refuses the EXPLAIN the statement check needs.
//
// Use a user with only SELECT on the database (deploy/clickhouse/reader.sql): the grants are the
// server's own enforcement, the settings the client's.
func OpenReader(ctx context.Context, dsn string, tlsConfig *tls.Config, lim store.Limits) (*Store, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	rs := &readerSettings{read: clickhouse.Settings{}, explain: clickhouse.Settings{}}
	s, err := open(ctx, dsn, tlsConfig, rs)
	if err != nil {
		return nil, err
	}
	r, err := s.query(ctx, "SELECT toString(getSetting('readonly'))", nil, false)
	if err != nil || len(r.Rows) != 1 {
		s.Close()
		return nil, fmt.Errorf("clickhouse reader: read the user's readonly setting: %v", err)
	}
	mode, _ := r.Rows[0][0].(string)
	if mode == "1" {
		s.Close()
		return nil, errors.New("clickhouse reader: the user's profile has readonly = 1, under which ClickHouse refuses the EXPLAIN that checks raw SQL: give it readonly = 2 (deploy/clickhouse/reader.sql)")
	}
	for _, st := range lim.Settings() {
		if st.Name == "readonly" {
			if mode == "0" {
				rs.read["readonly"] = clickhouse.CustomSetting{Value: "1"}
				rs.explain["readonly"] = clickhouse.CustomSetting{Value: "2"}
			}
			continue
		}
		rs.read[st.Name] = clickhouse.CustomSetting{Value: strings.Trim(st.Value, "'")}
	}
	return s, nil
}

// ParseSelect implements store.Parser with the same two statements as chDB (store.ParseSelectWith).
func (s *Store) ParseSelect(ctx context.Context, sql string, params store.Params) (canonical, tree string, err error) {
	if s.reader != nil && len(s.reader.explain) > 0 {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(s.reader.explain))
	}
	return store.ParseSelectWith(ctx, sql, params, func(ctx context.Context, q string, p store.Params) (*store.Result, error) {
		return s.query(ctx, q, p, false)
	})
}
