package plugin

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/store"
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
	f.Meta = &data.FrameMeta{Type: data.FrameTypeTimeSeriesWide}
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

// resultFrame turns a raw SQL result into a frame. A column is typed by its values: all
// DateTime-shaped strings make a time field (so the result can be graphed), numbers a nullable
// float, anything else a nullable string.
func resultFrame(r *store.Result) *data.Frame {
	f := data.NewFrame("sql")
	for c, name := range r.Columns {
		kind := "time"
		for _, row := range r.Rows {
			switch v := row[c].(type) {
			case nil:
			case string:
				if _, ok := parseDateTime(v); !ok {
					kind = "string"
				}
			case int64, uint64, float64:
				if kind == "time" {
					kind = "number"
				}
			default:
				kind = "string"
			}
			if kind == "string" {
				break
			}
		}
		if len(r.Rows) == 0 {
			kind = "string"
		}
		switch kind {
		case "time":
			vals := make([]*time.Time, len(r.Rows))
			complete := true
			for i, row := range r.Rows {
				if s, ok := row[c].(string); ok {
					t, _ := parseDateTime(s)
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
				f.Fields = append(f.Fields, data.NewField(name, nil, ts))
			} else {
				f.Fields = append(f.Fields, data.NewField(name, nil, vals))
			}
		case "number":
			vals := make([]*float64, len(r.Rows))
			for i, row := range r.Rows {
				var x float64
				switch v := row[c].(type) {
				case int64:
					x = float64(v)
				case uint64:
					x = float64(v)
				case float64:
					x = v
				default:
					continue
				}
				vals[i] = &x
			}
			f.Fields = append(f.Fields, data.NewField(name, nil, vals))
		default:
			vals := make([]*string, len(r.Rows))
			for i, row := range r.Rows {
				if row[c] != nil {
					s := toString(row[c])
					vals[i] = &s
				}
			}
			f.Fields = append(f.Fields, data.NewField(name, nil, vals))
		}
	}
	// One number per row labelled by string columns is what alert rules read as one series per row
	// (Grafana's numeric long shape): SELECT node, count() … GROUP BY node alerts per node.
	numbers, strs := 0, 0
	for _, fl := range f.Fields {
		switch {
		case fl.Type().Numeric():
			numbers++
		case fl.Type() == data.FieldTypeNullableString:
			strs++
		}
	}
	if numbers == 1 && numbers+strs == len(f.Fields) && f.Rows() > 0 {
		f.Meta = &data.FrameMeta{Type: data.FrameTypeNumericLong, TypeVersion: data.FrameTypeVersion{0, 1}}
	}
	return f
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
