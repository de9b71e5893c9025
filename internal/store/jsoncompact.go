package store

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// ParseJSONCompact turns ClickHouse's JSONCompact output into a Result. The Result shares no
// memory with data, which may be the engine's own buffer, freed once this returns.
//
// The output is scanned once and each cell converted where it lies: encoding/json would first
// copy every cell into a json.RawMessage of its own and then box a copy of that, several times
// the output's size for an answer of a million cells. A string repeated down a column (bucket
// times, GPU and node names) is one value shared by its rows. What the scanner does not take
// itself (a string with escapes or invalid UTF-8: that cell; keys out of order, duplicates,
// malformed JSON, a value that does not convert: the whole document) goes through encoding/json
// as before, so every input gets the Result or the error it always did.
func ParseJSONCompact(data []byte) (*Result, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return &Result{}, nil
	}
	if r, ok := scanJSONCompact(data); ok {
		return r, nil
	}
	return parseJSONCompactStd(data)
}

// scanJSONCompact is ParseJSONCompact's fast path; false sends the document to encoding/json.
func scanJSONCompact(data []byte) (*Result, bool) {
	s := &jscan{b: data}
	if !s.next('{') || s.peek() == '}' {
		return nil, false
	}
	var (
		meta  []struct{ Name, Type string }
		stats struct {
			RowsRead uint64 `json:"rows_read"`
		}
		rows                          [][]any
		haveMeta, haveData, haveStats bool
	)
	for {
		key, esc, ok := s.str()
		if !ok || esc || !s.next(':') {
			return nil, false
		}
		switch k := string(key); {
		case k == "meta" && !haveMeta && !haveData:
			span, ok := s.skip()
			if !ok || json.Unmarshal(span, &meta) != nil {
				return nil, false
			}
			haveMeta = true
		case k == "data" && haveMeta && !haveData:
			if rows, ok = s.rows(meta); !ok {
				return nil, false
			}
			haveData = true
		case k == "statistics" && !haveStats:
			span, ok := s.skip()
			if !ok || json.Unmarshal(span, &stats) != nil {
				return nil, false
			}
			haveStats = true
		case strings.EqualFold(k, "meta") || strings.EqualFold(k, "data") || strings.EqualFold(k, "statistics"):
			return nil, false // encoding/json's own rules for these
		default:
			if span, ok := s.skip(); !ok || !json.Valid(span) {
				return nil, false
			}
		}
		if s.next(',') {
			continue
		}
		if s.next('}') {
			break
		}
		return nil, false
	}
	if s.ws(); s.i != len(s.b) {
		return nil, false
	}
	if rows == nil {
		rows = [][]any{}
	}
	r := &Result{Rows: rows, RowsRead: stats.RowsRead}
	for _, m := range meta {
		r.Columns = append(r.Columns, m.Name)
		r.Types = append(r.Types, m.Type)
	}
	return r, true
}

// jscan reads JSON from b at i.
type jscan struct {
	b []byte
	i int
}

func (s *jscan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek is the next byte after white space, 0 at the end.
func (s *jscan) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// next consumes c if it comes next.
func (s *jscan) next(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// str reads a string: its bytes between the quotes and whether any is escaped. Escapes are left
// to whoever decodes them.
func (s *jscan) str() (content []byte, esc, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return s.b[start:j], esc, true
		case c == '\\':
			esc = true
			j++
		case c < 0x20:
			return nil, false, false
		}
	}
	return nil, false, false
}

// skip reads one value and returns its bytes. Strings and nesting are followed, not checked:
// what is not a string or a number is checked by its caller.
func (s *jscan) skip() ([]byte, bool) {
	s.ws()
	start, depth := s.i, 0
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '"':
			if _, _, ok := s.str(); !ok {
				return nil, false
			}
			if depth == 0 {
				return s.b[start:s.i], true
			}
			continue
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return s.b[start:s.i], s.i > start
			}
			if depth--; depth == 0 {
				s.i++
				return s.b[start:s.i], true
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return s.b[start:s.i], s.i > start
			}
		}
		s.i++
	}
	return s.b[start:s.i], depth == 0 && s.i > start
}

// rowChunk is how many rows share one allocation of cells.
const rowChunk = 1024

// rows reads the data array, converting each cell by its column's type.
func (s *jscan) rows(meta []struct{ Name, Type string }) ([][]any, bool) {
	if bytes.HasPrefix(s.b[s.i:], []byte("null")) {
		s.i += 4
		return nil, true
	}
	if !s.next('[') {
		return nil, false
	}
	n := len(meta)
	cols := make([]column, n)
	for i, m := range meta {
		cols[i] = newColumn(m.Type)
	}
	// Rows gather in chunks and are copied once into a slice of the exact length: appending to
	// one slice would leave up to a quarter of it spare and copy it at every growth.
	var chunks [][][]any
	var chunk [][]any
	var cells []any
	total := 0
	if !s.next(']') {
		for {
			if !s.next('[') {
				return nil, false
			}
			if len(cells) < n {
				cells = make([]any, n*rowChunk)
			}
			row := cells[:n:n]
			cells = cells[n:]
			if n == 0 {
				row = []any{}
			}
			got := 0
			if !s.next(']') {
				for {
					span, ok := s.skip()
					if !ok || got >= n {
						return nil, false
					}
					if row[got], ok = cols[got].convert(span); !ok {
						return nil, false
					}
					got++
					if s.next(',') {
						continue
					}
					if s.next(']') {
						break
					}
					return nil, false
				}
			}
			if got != n {
				return nil, false
			}
			if chunk == nil {
				chunk = make([][]any, 0, rowChunk)
			}
			if chunk = append(chunk, row); len(chunk) == rowChunk {
				chunks, chunk = append(chunks, chunk), nil
			}
			total++
			if s.next(',') {
				continue
			}
			if s.next(']') {
				break
			}
			return nil, false
		}
	}
	out := make([][]any, 0, total)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, chunk...), true
}

type colKind int

const (
	kindText colKind = iota // strings, dates, wide integers, arrays…: their text
	kindUint
	kindInt
	kindFloat
)

// column converts one column's cells as convertJSON does.
type column struct {
	typ    string
	kind   colKind
	shared map[string]any
	hits   int
}

func newColumn(typ string) column {
	t := strings.TrimSuffix(strings.TrimPrefix(typ, "Nullable("), ")")
	t = strings.TrimSuffix(strings.TrimPrefix(t, "LowCardinality("), ")")
	c := column{typ: typ}
	switch {
	case t == "UInt128" || t == "UInt256" || t == "Int128" || t == "Int256":
	case strings.HasPrefix(t, "UInt"):
		c.kind = kindUint
	case strings.HasPrefix(t, "Int"):
		c.kind = kindInt
	case strings.HasPrefix(t, "Float"):
		c.kind = kindFloat
	}
	return c
}

// convert turns one cell's JSON into its value; false when encoding/json must decide.
func (c *column) convert(raw []byte) (any, bool) {
	switch raw[0] {
	case '"':
		content := raw[1 : len(raw)-1]
		if bytes.IndexByte(content, '\\') >= 0 || !utf8.Valid(content) {
			if !json.Valid(raw) {
				return nil, false
			}
			v, err := convertJSON(c.typ, raw)
			return v, err == nil
		}
		return c.text(content)
	case '[', '{':
		if !json.Valid(raw) {
			return nil, false
		}
		return c.text(raw)
	case 'n':
		return nil, string(raw) == "null"
	case 't', 'f':
		if string(raw) != "true" && string(raw) != "false" {
			return nil, false
		}
		return c.text(raw)
	default:
		if !validNumber(raw) {
			return nil, false
		}
		return c.text(raw)
	}
}

// maxShared is how many distinct strings a column shares before it shares only if they repeat.
const maxShared = 1 << 12

// text converts a string's content or a bare value's bytes.
func (c *column) text(t []byte) (any, bool) {
	// The numbers are parsed from a view of t, not a copy: strconv keeps its input only in the
	// error, which is dropped here (encoding/json then reports it).
	view := unsafe.String(unsafe.SliceData(t), len(t))
	switch c.kind {
	case kindUint:
		v, err := strconv.ParseUint(view, 10, 64)
		return v, err == nil
	case kindInt:
		v, err := strconv.ParseInt(view, 10, 64)
		return v, err == nil
	case kindFloat:
		switch view {
		case "nan":
			return nan(), true
		case "inf", "+inf":
			return inf(1), true
		case "-inf":
			return inf(-1), true
		}
		v, err := strconv.ParseFloat(view, 64)
		return v, err == nil
	}
	if v, ok := c.shared[view]; ok {
		c.hits++
		return v, true
	}
	var v any = string(t)
	if c.shared == nil {
		c.shared = map[string]any{}
	}
	// A column of distinct strings (raw SQL over ids) would only grow the map.
	if len(c.shared) < maxShared || c.hits >= len(c.shared) {
		c.shared[v.(string)] = v
	}
	return v, true
}

// validNumber reports whether b is a JSON number.
func validNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}
