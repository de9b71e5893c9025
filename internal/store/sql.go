package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// InsertSetting is one ClickHouse setting of an insert. Value is the raw value (what the native
// protocol sends); String says SQL writes it as a quoted literal rather than bare.
type InsertSetting struct {
	Name, Value string
	String      bool
}

// SQL is the setting as written in a SETTINGS clause.
func (s InsertSetting) SQL() string {
	if s.String {
		return s.Name + " = " + QuoteString(s.Value)
	}
	return s.Name + " = " + s.Value
}

// InsertSettings are the settings every block insert carries, whichever the transport: chDB sends
// them in the statement (InsertSQL), the server transport with the query. With dedupToken a retried
// insert of a block is dropped by the table's deduplication window, and
// deduplicate_blocks_in_dependent_materialized_views makes the materialized views drop it too:
// each view's target table derives its own block id from the token and the view, and keeps it in
// its own window. Without it a replay that gpu_samples dropped still reached every rollup (the
// default is 1 on ClickHouse 24.x and later but 0 on older servers, so it is sent, not assumed).
// It is sent without a token as well: the raw table then drops a block of identical content, and
// the views must drop the same block, not count it again.
func InsertSettings(dedupToken string) []InsertSetting {
	out := make([]InsertSetting, 0, 2)
	if dedupToken != "" {
		out = append(out, InsertSetting{Name: "insert_deduplication_token", Value: dedupToken, String: true})
	}
	return append(out, InsertSetting{Name: "deduplicate_blocks_in_dependent_materialized_views", Value: "1"})
}

// InsertSQL is the INSERT statement chDB sends for a block, up to its FORMAT clause:
// "INSERT INTO db.table (cols) [source] SETTINGS <InsertSettings(dedupToken)>". source is where the
// data comes from when not from the client (chDB's "FROM INFILE '...'"). The server transport sends
// InsertSQL(db, table, b, "", nil) and the same settings with the query.
func InsertSQL(db, table string, b *Block, source string, settings []InsertSetting) string {
	var sb strings.Builder
	sb.WriteString("INSERT INTO ")
	sb.WriteString(Table(db, table))
	sb.WriteString(" (")
	sb.WriteString(strings.Join(b.ColumnNames(), ", "))
	sb.WriteString(")")
	if source != "" {
		sb.WriteString(" ")
		sb.WriteString(source)
	}
	for i, s := range settings {
		if i == 0 {
			sb.WriteString(" SETTINGS ")
		} else {
			sb.WriteString(", ")
		}
		sb.WriteString(s.SQL())
	}
	return sb.String()
}

// parseJSONCompactStd is ParseJSONCompact by encoding/json alone: what the scanner falls back to
// for anything it does not take itself, so that such input gets the same Result or error as ever.
func parseJSONCompactStd(data []byte) (*Result, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return &Result{}, nil
	}
	var doc struct {
		Meta       []struct{ Name, Type string }
		Data       [][]json.RawMessage
		Statistics struct {
			RowsRead uint64 `json:"rows_read"`
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse query result: %w", err)
	}
	r := &Result{Rows: make([][]any, 0, len(doc.Data)), RowsRead: doc.Statistics.RowsRead}
	for _, m := range doc.Meta {
		r.Columns = append(r.Columns, m.Name)
		r.Types = append(r.Types, m.Type)
	}
	for _, row := range doc.Data {
		if len(row) != len(doc.Meta) {
			return nil, fmt.Errorf("parse query result: row has %d values for %d columns", len(row), len(doc.Meta))
		}
		out := make([]any, len(row))
		for i, raw := range row {
			v, err := convertJSON(doc.Meta[i].Type, raw)
			if err != nil {
				return nil, fmt.Errorf("parse query result column %s: %w", doc.Meta[i].Name, err)
			}
			out[i] = v
		}
		r.Rows = append(r.Rows, out)
	}
	return r, nil
}

func convertJSON(typ string, raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	typ = strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")")
	typ = strings.TrimSuffix(strings.TrimPrefix(typ, "LowCardinality("), ")")
	text := string(raw)
	if s, err := strconv.Unquote(text); err == nil {
		text = s
	} else if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		text = s
	}
	switch {
	case typ == "UInt128" || typ == "UInt256" || typ == "Int128" || typ == "Int256":
		return text, nil // wider than 64 bits: their decimal text, as Result documents
	case strings.HasPrefix(typ, "UInt"):
		return strconv.ParseUint(text, 10, 64)
	case strings.HasPrefix(typ, "Int"):
		return strconv.ParseInt(text, 10, 64)
	case strings.HasPrefix(typ, "Float"):
		switch text {
		case "nan":
			return nan(), nil
		case "inf", "+inf":
			return inf(1), nil
		case "-inf":
			return inf(-1), nil
		}
		return strconv.ParseFloat(text, 64)
	default:
		if raw[0] != '"' {
			return string(raw), nil // arrays, tuples: keep their JSON
		}
		return text, nil
	}
}
