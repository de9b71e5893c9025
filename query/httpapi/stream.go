package httpapi

import (
	"bufio"
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// replySeries writes series as json.Encoder would, byte for byte, but point by point through a
// small buffer: the encoder builds the whole body in memory first, about 60 bytes a point, as
// much again as the series themselves for an answer at the cell cap.
func (a *api) replySeries(w http.ResponseWriter, series []query.Series) {
	if !streamable(series) {
		a.reply(w, series, nil) // the encoder's own refusal (NaN, a year past 9999), as ever
		return
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	if writeSeries(bw, series) == nil {
		_ = bw.Flush()
	}
}

// streamable is whether json.Encoder would encode every point: it refuses NaN and ±Inf, and
// times it cannot write in RFC 3339, and then writes nothing at all.
func streamable(series []query.Series) bool {
	for _, s := range series {
		for _, p := range s.Points {
			if y := p.T.Year(); y < 0 || y > 9999 {
				return false
			}
			if p.Value != nil && (math.IsNaN(*p.Value) || math.IsInf(*p.Value, 0)) {
				return false
			}
		}
	}
	return true
}

// writeSeries writes series followed by a newline, as json.NewEncoder(w).Encode(series) does.
func writeSeries(w *bufio.Writer, series []query.Series) error {
	if series == nil {
		_, err := w.WriteString("null\n")
		return err
	}
	var buf []byte
	w.WriteByte('[')
	for i, s := range series {
		if i > 0 {
			w.WriteByte(',')
		}
		labels, err := json.Marshal(s.Labels)
		if err != nil {
			return err
		}
		w.WriteString(`{"labels":`)
		w.Write(labels)
		w.WriteString(`,"points":`)
		if s.Points == nil {
			w.WriteString("null")
		} else {
			w.WriteByte('[')
			for j, p := range s.Points {
				buf = buf[:0]
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, `{"t":`...)
				t, err := p.T.MarshalJSON()
				if err != nil {
					return err
				}
				buf = append(buf, t...)
				buf = append(buf, `,"value":`...)
				if p.Value == nil {
					buf = append(buf, "null"...)
				} else {
					buf = appendFloat(buf, *p.Value)
				}
				buf = append(buf, '}')
				if _, err := w.Write(buf); err != nil {
					return err
				}
			}
			w.WriteByte(']')
		}
		w.WriteByte('}')
	}
	w.WriteByte(']')
	_, err := w.WriteString("\n")
	return err
}

// appendFloat writes a finite float64 as encoding/json does (its floatEncoder, 64-bit): the
// shortest form, in exponent form below 1e-6 or from 1e21, without a leading zero in the exponent.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// replyRows writes a raw SQL answer as json.Encoder would write
// {"columns": …, "rows": …, "rows_read": …}, byte for byte, a row at a time.
func (a *api) replyRows(w http.ResponseWriter, res *store.Result) {
	if !rowsStreamable(res.Rows) {
		a.reply(w, map[string]any{"columns": res.Columns, "rows": res.Rows, "rows_read": res.RowsRead}, nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	if writeRows(bw, res) == nil {
		_ = bw.Flush()
	}
}

// rowsStreamable is whether every value is of a type Result documents and one the encoder
// writes (it refuses NaN and ±Inf, and then writes nothing at all).
func rowsStreamable(rows [][]any) bool {
	for _, row := range rows {
		for _, v := range row {
			switch v := v.(type) {
			case nil, string, int64, uint64:
			case float64:
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

func writeRows(w *bufio.Writer, res *store.Result) error {
	cols, err := json.Marshal(res.Columns)
	if err != nil {
		return err
	}
	w.WriteString(`{"columns":`)
	w.Write(cols)
	w.WriteString(`,"rows":`)
	var buf []byte
	if res.Rows == nil {
		w.WriteString("null")
	} else {
		w.WriteByte('[')
		for i, row := range res.Rows {
			buf = buf[:0]
			if i > 0 {
				buf = append(buf, ',')
			}
			if row == nil {
				buf = append(buf, "null"...)
			} else {
				buf = append(buf, '[')
				for j, v := range row {
					if j > 0 {
						buf = append(buf, ',')
					}
					switch v := v.(type) {
					case nil:
						buf = append(buf, "null"...)
					case int64:
						buf = strconv.AppendInt(buf, v, 10)
					case uint64:
						buf = strconv.AppendUint(buf, v, 10)
					case float64:
						buf = appendFloat(buf, v)
					default: // a string: the encoder's escaping, HTML and invalid UTF-8 included
						s, err := json.Marshal(v)
						if err != nil {
							return err
						}
						buf = append(buf, s...)
					}
				}
				buf = append(buf, ']')
			}
			if _, err := w.Write(buf); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	}
	w.WriteString(`,"rows_read":`)
	w.Write(strconv.AppendUint(buf[:0], res.RowsRead, 10))
	_, err = w.WriteString("}\n")
	return err
}
