package query

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query/guard"
)

// Raw SQL for analytics (the Grafana plugin's SQL mode, query --sql, the API's /sql): one SELECT
// with Grafana-style macros. The window and interval reach ClickHouse as bound parameters; what may
// run is decided by guard on the engine's own parse, and runs on a read-only session.

// Window is the time range and step a raw statement's macros expand against.
type Window struct {
	From, To time.Time
	Interval time.Duration // rounded up to whole seconds, at least 1 s
}

var (
	macroRE = regexp.MustCompile(`\$__(timeFilter|timeInterval|conditionalAll)\(|\$__(interval_s|fromTime|toTime)\b`)
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

// PrepareSQL expands macros in a user's statement, has the engine parse it and refuses what guard's
// policy refuses. It returns the engine's canonical text of the statement and the parameters its
// macros bind: what RunSQL runs, and what the plugin's compile resource shows.
func PrepareSQL(ctx context.Context, s store.Store, sql string, w Window) (string, store.Params, error) {
	ps, ok := s.(store.Parser)
	if !ok {
		return "", nil, fmt.Errorf("sql: the store cannot parse statements, so raw SQL is off")
	}
	if strings.TrimSpace(sql) == "" {
		return "", nil, fmt.Errorf("%w: sql: empty statement", ErrInvalid)
	}
	expanded, p, err := ExpandMacros(sql, w)
	if err != nil {
		return "", nil, err
	}
	canonical, err := guard.Check(ctx, ps, expanded, p, guard.Policy{Database: s.Database()})
	if err != nil {
		if errors.Is(err, guard.ErrRefused) {
			return "", nil, fmt.Errorf("%w: sql: %w", ErrInvalid, err)
		}
		return "", nil, fmt.Errorf("sql: %w", err)
	}
	return canonical, p, nil
}

// RunSQL runs a user's statement as PrepareSQL checked it. s must be a reader store
// (internal/store/backend.OpenReader): a session at readonly = 1 with limits, so that even a gap in the policy
// cannot write.
func RunSQL(ctx context.Context, s store.Store, sql string, w Window) (*store.Result, error) {
	canonical, p, err := PrepareSQL(ctx, s, sql, w)
	if err != nil {
		return nil, err
	}
	r, err := s.QueryWith(ctx, canonical, p)
	if err != nil {
		return nil, tooLarge(ctx, s, "sql", err)
	}
	return r, nil
}
