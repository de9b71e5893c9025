package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrReadOnly is returned by a reader store's Exec and Insert: the read paths (raw SQL, the HTTP API,
// the Grafana plugin) hold a connection that cannot write, and say so before the engine does.
var ErrReadOnly = errors.New("read-only store: this connection only reads")

// Limits bound every statement a reader store runs. The engine enforces them: they are settings of
// the reader's session (chDB) or of each query (server), applied before readonly = 1 forbids any
// further change. Zero fields take DefaultLimits' values.
type Limits struct {
	MaxExecutionTime time.Duration // max_execution_time, whole seconds
	MaxResultRows    uint64        // max_result_rows
	MaxResultBytes   uint64        // max_result_bytes (uncompressed, in the engine's memory)
	MaxMemoryUsage   uint64        // max_memory_usage, bytes per query
	MaxRowsToRead    uint64        // max_rows_to_read
}

// DefaultLimits are safe for a dashboard over a large fleet: a minute's query over 1,024 GPUs × 24 h
// of raw seconds reads 88 M rows; a panel never needs a million points.
func DefaultLimits() Limits {
	return Limits{
		MaxExecutionTime: 30 * time.Second,
		MaxResultRows:    1_000_000,
		MaxResultBytes:   256 << 20,
		MaxMemoryUsage:   4 << 30,
		MaxRowsToRead:    2_000_000_000,
	}
}

// WithDefaults fills zero fields from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if l.MaxExecutionTime == 0 {
		l.MaxExecutionTime = d.MaxExecutionTime
	}
	if l.MaxResultRows == 0 {
		l.MaxResultRows = d.MaxResultRows
	}
	if l.MaxResultBytes == 0 {
		l.MaxResultBytes = d.MaxResultBytes
	}
	if l.MaxMemoryUsage == 0 {
		l.MaxMemoryUsage = d.MaxMemoryUsage
	}
	if l.MaxRowsToRead == 0 {
		l.MaxRowsToRead = d.MaxRowsToRead
	}
	return l
}

// Validate names the field that is out of range.
func (l Limits) Validate() error {
	if l.MaxExecutionTime < 0 || (l.MaxExecutionTime > 0 && l.MaxExecutionTime < time.Second) {
		return fmt.Errorf("limits: max_execution_time %s: must be at least 1s", l.MaxExecutionTime)
	}
	return nil
}

// SessionSetting is one engine setting of a reader's session, Value as SQL text.
type SessionSetting struct{ Name, Value string }

// Settings are the limits as engine settings, in the order they are applied, ending with
// readonly = 1 (after which the session can change nothing, these limits included).
func (l Limits) Settings() []SessionSetting {
	l = l.WithDefaults()
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	secs := int64((l.MaxExecutionTime + time.Second - 1) / time.Second)
	return []SessionSetting{
		{"max_execution_time", strconv.FormatInt(secs, 10)},
		{"timeout_overflow_mode", "'throw'"},
		{"max_result_rows", u(l.MaxResultRows)},
		{"max_result_bytes", u(l.MaxResultBytes)},
		{"result_overflow_mode", "'throw'"},
		{"max_memory_usage", u(l.MaxMemoryUsage)},
		{"max_rows_to_read", u(l.MaxRowsToRead)},
		{"read_overflow_mode", "'throw'"},
		// On a sharded cluster (migrate --shard-database) every table of the read database is
		// Distributed, and the queries' IN and JOIN subqueries over them (a job's GPUs span
		// shards) would be refused under the default 'deny'; 'global' runs each once and ships
		// its result to the shards. Without Distributed tables it changes nothing.
		{"distributed_product_mode", "'global'"},
		{"readonly", "1"},
	}
}

// Parser is implemented by the stores: it asks the engine's own parser about a statement without
// running it.
type Parser interface {
	// ParseSelect returns the engine's canonical text of sql (formatQuery) and its syntax tree
	// (EXPLAIN AST). It fails for more than one statement, for anything but a SELECT, and for output
	// clauses (INTO OUTFILE, FORMAT). params fill sql's {name:Type} placeholders.
	ParseSelect(ctx context.Context, sql string, params Params) (canonical, tree string, err error)
}

// ParseSelectWith implements Parser for a transport: query runs one statement with bound
// parameters on a session that may EXPLAIN and must not write. Both transports send the same two
// statements through it.
func ParseSelectWith(ctx context.Context, sql string, params Params,
	query func(ctx context.Context, sql string, params Params) (*Result, error)) (canonical, tree string, err error) {
	r, err := query(ctx, FormatQuerySQL, Params{"gf_statement": StringParam(sql)})
	if err != nil {
		return "", "", fmt.Errorf("parse: %w", err)
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 1 {
		return "", "", errors.New("parse: formatQuery gave no single value")
	}
	canonical, _ = r.Rows[0][0].(string)
	explain, err := ExplainASTSQL(canonical)
	if err != nil {
		return "", "", err
	}
	if r, err = query(ctx, explain, params); err != nil {
		return "", "", fmt.Errorf("parse: %w", err)
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

// FormatQuerySQL is the statement that returns a user's statement, bound as the parameter
// gf_statement, in the engine's canonical form: the text never becomes SQL, so it cannot run.
const FormatQuerySQL = "SELECT formatQuery({gf_statement:String})"

// ExplainASTSQL asks for canonical's syntax tree. canonical must come from FormatQuerySQL: one
// statement, balanced, in the engine's own quoting. As a subquery, EXPLAIN accepts only a SELECT and
// refuses output clauses, and the statement is never executed.
func ExplainASTSQL(canonical string) (string, error) {
	if err := checkCanonical(canonical); err != nil {
		return "", fmt.Errorf("explain: %w", err)
	}
	return "SELECT explain FROM (EXPLAIN AST " + canonical + "\n)", nil
}

// checkCanonical refuses text that could end the EXPLAIN subquery early: a statement separator,
// a comment or an unbalanced parenthesis outside quotes. formatQuery never produces them; this is
// the second lock on the door.
func checkCanonical(s string) error {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			switch c {
			case '\\':
				i++
			case quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '\'', '"', '`':
			quote = c
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return errors.New("unbalanced parentheses")
			}
		case ';':
			return errors.New("more than one statement")
		case '-', '/', '#':
			if c == '#' || (i+1 < len(s) && (s[i+1] == c || (c == '/' && s[i+1] == '*'))) {
				return errors.New("comment in canonical text")
			}
		}
	}
	if quote != 0 || depth != 0 {
		return errors.New("unbalanced quotes or parentheses")
	}
	return nil
}

// ErrNoSchema reports that the database or its tables are missing: run gpufleet migrate.
var ErrNoSchema = errors.New("no gpufleet schema")

// StringParam is v in the text form a {name:String} placeholder's value takes: the engine reads
// parameter values as escaped text (TabSeparated's field syntax), so a backslash, tab or newline
// must be escaped or the value the query sees differs from v.
func StringParam(v string) string {
	return strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`).Replace(v)
}
