package plugin

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// wideFrame puts every series in one frame sharing a time column — Grafana's wide time-series
// shape — with each value field carrying its group's labels. A step a series lacks is null.
func wideFrame(metric string, series []query.Series) *data.Frame {
	var times []time.Time
	seen := map[int64]bool{}
	for _, s := range series {
		for _, p := range s.Points {
			if ms := p.T.UnixMilli(); !seen[ms] {
				seen[ms] = true
				times = append(times, p.T)
			}
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	row := make(map[int64]int, len(times))
	for i, t := range times {
		row[t.UnixMilli()] = i
	}
	f := data.NewFrame(metric, data.NewField("time", nil, times))
	for _, s := range series {
		vals := make([]*float64, len(times))
		for _, p := range s.Points {
			vals[row[p.T.UnixMilli()]] = p.Value
		}
		f.Fields = append(f.Fields, data.NewField(metric, data.Labels(s.Labels), vals))
	}
	f.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1}}
	return f
}

// numericFrame is one row with a value field per group, labelled: Grafana's numeric wide shape,
// which stat panels show and alert rules read as one number per series. No group, no field: the
// alert sees "no data" rather than a zero.
func numericFrame(metric string, series []query.Series) *data.Frame {
	f := data.NewFrame(metric)
	for _, s := range series {
		var v *float64
		if len(s.Points) > 0 {
			v = s.Points[0].Value
		}
		f.Fields = append(f.Fields, data.NewField(metric, data.Labels(s.Labels), []*float64{v}))
	}
	f.Meta = &data.FrameMeta{Type: data.FrameTypeNumericWide, TypeVersion: data.FrameTypeVersion{0, 1}}
	return f
}

// topFrame is a table of ranked GPUs.
func topFrame(metric string, rows []query.GPURank) *data.Frame {
	var cluster, node, uuid, model, job []string
	var value []float64
	for _, r := range rows {
		cluster, node, uuid, model, job = append(cluster, r.Cluster), append(node, r.Node), append(uuid, r.UUID), append(model, r.Model), append(job, r.Job)
		value = append(value, r.Value)
	}
	return data.NewFrame("top "+metric,
		data.NewField("cluster", nil, orEmpty(cluster)), data.NewField("node", nil, orEmpty(node)),
		data.NewField("uuid", nil, orEmpty(uuid)), data.NewField("model", nil, orEmpty(model)),
		data.NewField("job_id", nil, orEmpty(job)), data.NewField(metric, nil, orEmptyF(value)))
}

func orEmpty(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func orEmptyF(v []float64) []float64 {
	if v == nil {
		return []float64{}
	}
	return v
}

// resultFrame turns a raw SQL result into a frame, typing each field by the column's ClickHouse
// type (not by its values, so that an empty result keeps its numeric fields and an alert sees no
// data rather than a frame it cannot read): Date and DateTime columns are times, integers, floats
// and decimals nullable floats, Bool nullable bools, everything else nullable strings.
func resultFrame(r *store.Result) *data.Frame {
	f := data.NewFrame("sql")
	for c, name := range r.Columns {
		typ := ""
		if c < len(r.Types) {
			typ = r.Types[c]
		}
		f.Fields = append(f.Fields, resultField(name, columnKind(typ), r.Rows, c))
	}
	// One number per row labelled by string columns is what alert rules read as one series per row
	// (Grafana's numeric long shape): SELECT node, count() … GROUP BY node alerts per node. With no
	// rows it is still that shape, which alerting reads as no data.
	numbers, strs := 0, 0
	for _, fl := range f.Fields {
		switch {
		case fl.Type().Numeric():
			numbers++
		case fl.Type() == data.FieldTypeNullableString:
			strs++
		}
	}
	if numbers == 1 && numbers+strs == len(f.Fields) {
		f.Meta = &data.FrameMeta{Type: data.FrameTypeNumericLong, TypeVersion: data.FrameTypeVersion{0, 1}}
	}
	return f
}

// kind is how a column becomes a field.
type kind int

const (
	kindString kind = iota
	kindNumber
	kindTime
	kindDate
	kindBool
)

// columnKind reads a ClickHouse type name; wrappers (Nullable, LowCardinality) do not change the kind.
func columnKind(typ string) kind {
	for _, w := range []string{"Nullable(", "LowCardinality("} {
		for strings.HasPrefix(typ, w) {
			typ = strings.TrimSuffix(strings.TrimPrefix(typ, w), ")")
		}
	}
	switch {
	case strings.HasPrefix(typ, "DateTime"):
		return kindTime
	case typ == "Date" || typ == "Date32":
		return kindDate
	case typ == "Bool":
		return kindBool
	case strings.HasPrefix(typ, "Int"), strings.HasPrefix(typ, "UInt"), strings.HasPrefix(typ, "Float"),
		strings.HasPrefix(typ, "Decimal"), typ == "BFloat16":
		return kindNumber
	}
	return kindString
}

func resultField(name string, k kind, rows [][]any, c int) *data.Field {
	switch k {
	case kindTime, kindDate:
		vals := make([]*time.Time, len(rows))
		complete := true
		for i, row := range rows {
			s, ok := row[c].(string)
			var t time.Time
			if ok && k == kindDate {
				t, ok = parseDate(s)
			} else if ok {
				t, ok = parseDateTime(s)
			}
			if ok {
				vals[i] = &t
			} else {
				complete = false
			}
		}
		if complete { // a non-null time column is what Grafana graphs against
			ts := make([]time.Time, len(vals))
			for i, v := range vals {
				ts[i] = *v
			}
			return data.NewField(name, nil, ts)
		}
		return data.NewField(name, nil, vals)
	case kindNumber:
		vals := make([]*float64, len(rows))
		for i, row := range rows {
			var x float64
			switch v := row[c].(type) {
			case int64:
				x = float64(v)
			case uint64:
				x = float64(v)
			case float64:
				x = v
			case string: // Decimal, and integers wider than 64 bits, arrive as text
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					continue
				}
				x = f
			default:
				continue
			}
			vals[i] = &x
		}
		return data.NewField(name, nil, vals)
	case kindBool:
		vals := make([]*bool, len(rows))
		for i, row := range rows {
			switch v := row[c].(type) {
			case string:
				b := v == "true" || v == "1"
				vals[i] = &b
			case int64, uint64:
				b := v != int64(0) && v != uint64(0)
				vals[i] = &b
			}
		}
		return data.NewField(name, nil, vals)
	}
	vals := make([]*string, len(rows))
	for i, row := range rows {
		if row[c] != nil {
			s := toString(row[c])
			vals[i] = &s
		}
	}
	return data.NewField(name, nil, vals)
}

// timeSeriesFrames is the "time series" format of a raw SQL result: a long result (a time column,
// string label columns, number columns) made wide, one series per label set, as Grafana's own SQL
// datasources do; other shapes are returned as they are.
func timeSeriesFrames(f *data.Frame) (*data.Frame, error) {
	if f.Rows() == 0 {
		f.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesMulti, TypeVersion: data.FrameTypeVersion{0, 1}}
		return f, nil
	}
	switch f.TimeSeriesSchema().Type {
	case data.TimeSeriesTypeLong:
		w, err := data.LongToWide(f, nil)
		if err != nil {
			return nil, err
		}
		w.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1}}
		return w, nil
	case data.TimeSeriesTypeWide:
		f.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide, TypeVersion: data.FrameTypeVersion{0, 1}}
	}
	return f, nil
}

func parseDate(s string) (time.Time, bool) {
	t, err := time.ParseInLocation(time.DateOnly, s, time.UTC)
	return t, err == nil
}

func parseDateTime(s string) (time.Time, bool) {
	if len(s) < len(time.DateTime) || s[4] != '-' || s[10] != ' ' {
		return time.Time{}, false
	}
	layout := time.DateTime
	if i := strings.IndexByte(s, '.'); i > 0 {
		layout += "." + strings.Repeat("0", len(s)-i-1)
	}
	t, err := time.ParseInLocation(layout, s, time.UTC)
	return t, err == nil
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}
