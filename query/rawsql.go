package query

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/store"
)

// Raw SQL for analytics (the Grafana plugin's SQL mode): a single read-only statement with
// Grafana-style macros. The window and interval reach ClickHouse as bound parameters; the statement
// runs with readonly = 1, which the engine enforces: no writes, no settings changes, no file() or
// url() table functions.

// Window is the time range and step a raw statement's macros expand against.
type Window struct {
	From, To time.Time
	Interval time.Duration // rounded up to whole seconds, at least 1 s
}

var (
	macroRE = regexp.MustCompile(`\$__(timeFilter|timeInterval|conditionalAll)\(|\$__(interval_s|fromTime|toTime)\b`)
	// A statement must start with one of these, after comments and parentheses.
	readOnlyStart = regexp.MustCompile(`(?i)^(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b`)
)

// ExpandMacros replaces the macros in sql:
//
//	$__timeFilter(col)        col >= from AND col < to
//	$__timeInterval(col)      the start of col's bucket of the interval
//	$__interval_s             the interval in seconds
//	$__fromTime, $__toTime    the window's ends as DateTime64(3)
//	$__conditionalAll(c, v)   c, or 1=1 when v is empty or Grafana's "All" ($__all, All)
//
// It returns the SQL and the parameters the expansions refer to.
func ExpandMacros(sql string, w Window) (string, store.Params, error) {
	interval := max(w.Interval, time.Second)
	if r := interval % time.Second; r != 0 {
		interval += time.Second - r
	}
	p := store.Params{
		"gf_from":       strconv.FormatInt(w.From.UnixMilli(), 10),
		"gf_to":         strconv.FormatInt(w.To.UnixMilli(), 10),
		"gf_interval_s": strconv.FormatInt(int64(interval/time.Second), 10),
	}
	const from, to = "fromUnixTimestamp64Milli({gf_from:Int64}, 'UTC')", "fromUnixTimestamp64Milli({gf_to:Int64}, 'UTC')"
	var out strings.Builder
	rest := sql
	for {
		loc := macroRE.FindStringSubmatchIndex(rest)
		if loc == nil {
			out.WriteString(rest)
			break
		}
		out.WriteString(rest[:loc[0]])
		if loc[4] >= 0 { // argument-less macro
			switch rest[loc[4]:loc[5]] {
			case "interval_s":
				out.WriteString("{gf_interval_s:UInt32}")
			case "fromTime":
				out.WriteString(from)
			case "toTime":
				out.WriteString(to)
			}
			rest = rest[loc[1]:]
			continue
		}
		name := rest[loc[2]:loc[3]]
		args, n, err := macroArgs(rest[loc[1]:])
		if err != nil {
			return "", nil, fmt.Errorf("%w: $__%s: %v", ErrInvalid, name, err)
		}
		rest = rest[loc[1]+n:]
		switch name {
		case "timeFilter":
			if len(args) != 1 {
				return "", nil, fmt.Errorf("%w: $__timeFilter takes one column, got %d arguments", ErrInvalid, len(args))
			}
			fmt.Fprintf(&out, "(%s >= %s AND %s < %s)", args[0], from, args[0], to)
		case "timeInterval":
			if len(args) != 1 {
				return "", nil, fmt.Errorf("%w: $__timeInterval takes one column, got %d arguments", ErrInvalid, len(args))
			}
			fmt.Fprintf(&out, "toStartOfInterval(%s, toIntervalSecond({gf_interval_s:UInt32}))", args[0])
		case "conditionalAll":
			if len(args) != 2 {
				return "", nil, fmt.Errorf("%w: $__conditionalAll takes a condition and a variable, got %d arguments", ErrInvalid, len(args))
			}
			switch v := strings.Trim(strings.TrimSpace(args[1]), `'"`); v {
			case "", "$__all", "All":
				out.WriteString("1=1")
			default:
				out.WriteString(args[0])
			}
		}
	}
	return out.String(), p, nil
}

// macroArgs splits the arguments of a macro call at top-level commas; s starts after "(" and n is
// how much of s the arguments and the closing ")" take.
func macroArgs(s string) (args []string, n int, err error) {
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ')':
			return append(args, strings.TrimSpace(s[start:i])), i + 1, nil
		case c == ',' && depth == 0:
			args = append(args, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return nil, 0, fmt.Errorf("no closing parenthesis")
}

// CheckReadOnly rejects anything but a single reading statement before it reaches the engine (which
// enforces readonly itself): a clear error beats a permission failure.
func CheckReadOnly(sql string) error {
	s := strings.TrimSpace(stripLeadingComments(sql))
	s = strings.TrimLeft(s, "( \t\n")
	if !readOnlyStart.MatchString(s) {
		return fmt.Errorf("%w: sql: only SELECT (or WITH, SHOW, DESCRIBE, EXPLAIN) statements run here", ErrInvalid)
	}
	return nil
}

func stripLeadingComments(s string) string {
	for {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "--"):
			if i := strings.IndexByte(s, '\n'); i >= 0 {
				s = s[i+1:]
				continue
			}
			return ""
		case strings.HasPrefix(s, "/*"):
			if i := strings.Index(s, "*/"); i >= 0 {
				s = s[i+2:]
				continue
			}
			return ""
		}
		return s
	}
}

// RunSQL expands macros in a user's statement and runs it read-only.
func RunSQL(ctx context.Context, s store.Store, sql string, w Window) (*store.Result, error) {
	if err := CheckReadOnly(sql); err != nil {
		return nil, err
	}
	expanded, p, err := ExpandMacros(sql, w)
	if err != nil {
		return nil, err
	}
	// On its own line, so that a trailing "--" comment in the statement cannot swallow it; a
	// statement with its own SETTINGS or FORMAT fails to parse rather than run unrestricted.
	expanded = strings.TrimRight(strings.TrimSpace(expanded), ";") + "\nSETTINGS readonly = 1"
	r, err := s.QueryWith(ctx, expanded, p)
	if err != nil {
		return nil, fmt.Errorf("sql: %w", err)
	}
	return r, nil
}
