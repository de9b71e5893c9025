package ssetest

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

func p(v float64) *float64 { return &v }
func sp(v string) *string  { return &v }

var v01 = data.FrameTypeVersion{0, 1}

func typed(t data.FrameType, v data.FrameTypeVersion, fields ...*data.Field) *data.Frame {
	f := data.NewFrame("", fields...)
	f.Meta = &data.FrameMeta{Type: t, TypeVersion: v}
	return f
}

// got is a compact reading of results: kind, name, labels and value per item.
func got(r Results) []string {
	var out []string
	for _, v := range r {
		s := v.Kind.String()
		switch v.Kind {
		case Number:
			val := "null"
			if v.Value != nil {
				val = strconv.FormatFloat(*v.Value, 'g', -1, 64)
			}
			s += " " + v.Name + labelKey(v.Labels) + "=" + val
		case Series:
			s += " " + v.Name + labelKey(v.Labels)
		}
		out = append(out, s)
	}
	return out
}

func TestConvert(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name   string
		frames data.Frames
		want   []string
		err    string
	}{
		// https://grafana.com/docs/grafana/latest/alerting/fundamentals/alert-rule-evaluation/nodata-and-error-states/:
		// a query that succeeds with nothing is No Data.
		{name: "no frames", frames: nil, want: []string{"no data"}},
		// https://grafana.github.io/dataplane/numeric, NumericWide: each numeric field an item,
		// field labels used, string and time fields remainder data.
		{name: "numeric wide", frames: data.Frames{typed(data.FrameTypeNumericWide, v01,
			data.NewField("t", data.Labels{"gpu": "0"}, []*float64{p(80)}),
			data.NewField("t", data.Labels{"gpu": "1"}, []float64{90}),
			data.NewField("note", nil, []string{"x"}))},
			want: []string{`number t{gpu="0",}=80`, `number t{gpu="1",}=90`}},
		{name: "numeric wide null value", frames: data.Frames{typed(data.FrameTypeNumericWide, v01,
			data.NewField("t", data.Labels{"gpu": "0"}, []*float64{nil}))},
			want: []string{`number t{gpu="0",}=null`}},
		// "There should be no rows or a single row": a typed frame with no fields is the empty set,
		// no data; so is its only item without a row.
		{name: "numeric wide no fields", frames: data.Frames{typed(data.FrameTypeNumericWide, v01)}, want: []string{"no data"}},
		{name: "numeric wide no rows", frames: data.Frames{typed(data.FrameTypeNumericWide, v01,
			data.NewField("t", nil, []float64{}))}, want: []string{"no data"}},
		{name: "numeric wide two rows", frames: data.Frames{typed(data.FrameTypeNumericWide, v01,
			data.NewField("t", data.Labels{"a": "1"}, []float64{1, 2}), data.NewField("t", data.Labels{"a": "2"}, []float64{1, 2}))},
			err: "has 2 rows"},
		// NumericLong: each string column a dimension named by the column, every numeric field of each
		// row an item; field labels unused; time fields remainder.
		{name: "numeric long", frames: data.Frames{typed(data.FrameTypeNumericLong, v01,
			data.NewField("node", nil, []*string{sp("a"), sp("b")}),
			data.NewField("uuid", data.Labels{"ignored": "1"}, []string{"GPU-1", "GPU-2"}),
			data.NewField("when", nil, []time.Time{t0, t0}),
			data.NewField("xids", data.Labels{"ignored": "1"}, []*float64{p(2), nil}))},
			want: []string{`number xids{node="a",uuid="GPU-1",}=2`, `number xids{node="b",uuid="GPU-2",}=null`}},
		{name: "numeric long no rows keeps its fields: no data", frames: data.Frames{typed(data.FrameTypeNumericLong, v01,
			data.NewField("node", nil, []*string{}), data.NewField("xids", nil, []*float64{}))},
			want: []string{"no data"}},
		{name: "numeric long null dimension", frames: data.Frames{typed(data.FrameTypeNumericLong, v01,
			data.NewField("node", nil, []*string{nil}), data.NewField("xids", nil, []*float64{p(1)}))},
			err: `dimension "node" is null`},
		// NumericMulti: one value field per frame, each frame typed.
		{name: "numeric multi", frames: data.Frames{
			typed(data.FrameTypeNumericMulti, v01, data.NewField("c", data.Labels{"h": "a"}, []float64{1})),
			typed(data.FrameTypeNumericMulti, v01, data.NewField("c", data.Labels{"h": "b"}, []float64{6}))},
			want: []string{`number c{h="a",}=1`, `number c{h="b",}=6`}},
		{name: "numeric multi empty", frames: data.Frames{typed(data.FrameTypeNumericMulti, v01)}, want: []string{"no data"}},
		{name: "numeric multi untyped second frame", frames: data.Frames{
			typed(data.FrameTypeNumericMulti, v01, data.NewField("c", nil, []float64{1})),
			data.NewFrame("", data.NewField("c", nil, []float64{6}))},
			err: "wrong type"},
		// https://grafana.github.io/dataplane/timeseries: wide (labels on fields), long (string
		// dimensions), multi; an empty typed frame is no data.
		{name: "timeseries wide", frames: data.Frames{typed(data.FrameTypeTimeSeriesWide, v01,
			data.NewField("time", nil, []time.Time{t0, t0.Add(time.Minute)}),
			data.NewField("u", data.Labels{"c": "east"}, []*float64{p(1), nil}))},
			want: []string{`series u{c="east",}`}},
		{name: "timeseries wide only time: no data", frames: data.Frames{typed(data.FrameTypeTimeSeriesWide, v01,
			data.NewField("time", nil, []time.Time{}))}, want: []string{"no data"}},
		{name: "timeseries multi empty", frames: data.Frames{typed(data.FrameTypeTimeSeriesMulti, v01)}, want: []string{"no data"}},
		{name: "timeseries long", frames: data.Frames{typed(data.FrameTypeTimeSeriesLong, v01,
			data.NewField("time", nil, []time.Time{t0, t0, t0.Add(time.Minute)}),
			data.NewField("node", nil, []string{"a", "b", "a"}),
			data.NewField("u", nil, []float64{1, 2, 3}))},
			want: []string{`series u{node="a",}`, `series u{node="b",}`}},
		// Version 0.0 is not the dataplane contract (data.FrameMeta.TypeVersion): such a frame is
		// read by SSE's legacy rules, so a typed-but-unversioned string table is the legacy error.
		{name: "numeric long version 0.0 is legacy", frames: data.Frames{typed(data.FrameTypeNumericLong, data.FrameTypeVersion{},
			data.NewField("node", nil, []string{}), data.NewField("n", nil, []string{}))},
			err: "input data must be a wide series but got type not"},
		// Legacy (expression-queries docs): a table with no time, string columns and one number
		// column is a set of numbers, the string columns labels.
		{name: "untyped number table", frames: data.Frames{data.NewFrame("",
			data.NewField("node", nil, []string{"a", "b"}), data.NewField("n", nil, []int64{1, 0}))},
			want: []string{`number n{node="a",}=1`, `number n{node="b",}=0`}},
		{name: "untyped number table no rows: no data", frames: data.Frames{data.NewFrame("",
			data.NewField("node", nil, []*string{}), data.NewField("n", nil, []*float64{}))},
			want: []string{"no data"}},
		{name: "untyped no fields: no data", frames: data.Frames{data.NewFrame("")}, want: []string{"no data"}},
		// What the raw-SQL rules got before their frames were typed from column types: an empty
		// result with string-only fields, which is not a time series.
		{name: "untyped strings only", frames: data.Frames{data.NewFrame("",
			data.NewField("node", nil, []string{}), data.NewField("xids", nil, []string{}))},
			err: "input data must be a wide series but got type not (input refid)"},
		{name: "untyped two numbers", frames: data.Frames{data.NewFrame("",
			data.NewField("node", nil, []string{"a"}), data.NewField("x", nil, []float64{1}), data.NewField("y", nil, []float64{1}))},
			err: "input data must be a wide series but got type not"},
		// Alerting does not take long time series: grafana/grafana#48014; with no rows it is no
		// data since 9.4 (#59121).
		{name: "untyped long series", frames: data.Frames{data.NewFrame("",
			data.NewField("time", nil, []time.Time{t0}), data.NewField("node", nil, []string{"a"}), data.NewField("x", nil, []float64{1}))},
			err: "input data must be a wide series but got type long"},
		{name: "untyped long series no rows", frames: data.Frames{data.NewFrame("",
			data.NewField("time", nil, []time.Time{}), data.NewField("node", nil, []string{}), data.NewField("x", nil, []float64{}))},
			want: []string{"no data"}},
		{name: "untyped wide series", frames: data.Frames{data.NewFrame("",
			data.NewField("time", nil, []time.Time{t0}), data.NewField("x", data.Labels{"a": "1"}, []float64{1}))},
			want: []string{`series x{a="1",}`}},
		{name: "logs kind", frames: data.Frames{typed(data.FrameTypeLogLines, v01, data.NewField("body", nil, []string{"x"}))},
			err: "input data must be a wide series but got type not"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Convert(c.frames)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q (results %v)", err, c.err, got(r))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := got(r); strings.Join(g, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(g, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func q(ref string, model map[string]any) Query {
	return Query{RefID: ref, DatasourceUID: ExprUID, Model: model}
}

func threshold(in, typ string, params ...any) map[string]any {
	return map[string]any{"type": "threshold", "expression": in,
		"conditions": []any{map[string]any{"evaluator": map[string]any{"type": typ, "params": params}}}}
}

// The condition chain of a rule, on hand-built query answers.
func TestEvaluate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	long := func(vals ...*float64) data.Frames {
		nodes := []string{"a", "b", "c"}[:len(vals)]
		return data.Frames{typed(data.FrameTypeNumericLong, v01, data.NewField("node", nil, nodes), data.NewField("x", nil, vals))}
	}
	series := data.Frames{typed(data.FrameTypeTimeSeriesWide, v01,
		data.NewField("time", nil, []time.Time{t0, t0.Add(time.Minute), t0.Add(2 * time.Minute)}),
		data.NewField("u", data.Labels{"node": "a"}, []*float64{p(10), p(95), p(20)}),
		data.NewField("u", data.Labels{"node": "b"}, []*float64{p(10), nil, p(20)}))}
	for _, c := range []struct {
		name   string
		frames data.Frames
		exprs  []Query
		want   string // states in order, by label
		err    string
	}{
		// queries-conditions docs: the condition's non-zero result fires, 0 is Normal.
		{name: "threshold over numbers", frames: long(p(0), p(3)), exprs: []Query{q("C", threshold("A", "gt", 0))},
			want: `{node="a",}:Normal {node="b",}:Alerting`},
		{name: "null number is no data", frames: long(p(1), nil), exprs: []Query{q("C", threshold("A", "gt", 0))},
			want: `{node="a",}:Alerting {node="b",}:NoData`},
		{name: "no rows: one NoData instance", frames: long(), exprs: []Query{q("C", threshold("A", "gt", 0))},
			want: `{}:NoData`},
		// Threshold docs: within range is exclusive, the _included variant inclusive.
		{name: "within range", frames: long(p(1), p(5), p(9)), exprs: []Query{q("C", threshold("A", "within_range", 1, 9))},
			want: `{node="a",}:Normal {node="b",}:Alerting {node="c",}:Normal`},
		{name: "outside range included", frames: long(p(1), p(5), p(9)), exprs: []Query{q("C", threshold("A", "outside_range_included", 1, 9))},
			want: `{node="a",}:Alerting {node="b",}:Normal {node="c",}:Alerting`},
		// Reduce docs: each series becomes one number with its labels; strict mode makes a series
		// with a null NaN, which a Threshold reads as not above (0), dropNN leaves the null out.
		{name: "reduce max then threshold", frames: series,
			exprs: []Query{q("B", map[string]any{"type": "reduce", "expression": "A", "reducer": "max"}), q("C", threshold("B", "gt", 85))},
			want:  `{node="a",}:Alerting {node="b",}:Normal`},
		{name: "reduce dropNN", frames: series,
			exprs: []Query{q("B", map[string]any{"type": "reduce", "expression": "A", "reducer": "count", "settings": map[string]any{"mode": "dropNN"}}),
				q("C", threshold("B", "lt", 3))},
			want: `{node="a",}:Normal {node="b",}:Alerting`},
		// A Threshold straight on a time series leaves a series as the condition: "only reduced
		// data can be alerted on".
		{name: "threshold on a series without reduce", frames: series, exprs: []Query{q("C", threshold("A", "gt", 85))},
			err: "only reduced data can be alerted on"},
		// Math docs: relational operators give 1 or 0.
		{name: "math", frames: long(p(0), p(2)), exprs: []Query{q("C", map[string]any{"type": "math", "expression": "$A > 1"})},
			want: `{node="a",}:Normal {node="b",}:Alerting`},
		{name: "math constant first", frames: long(p(0), p(2)), exprs: []Query{q("C", map[string]any{"type": "math", "expression": "1 > ${A}"})},
			want: `{node="a",}:Alerting {node="b",}:Normal`},
		// Each instance is its label set: two results with the same labels fail the evaluation.
		{name: "duplicate label sets", frames: data.Frames{typed(data.FrameTypeNumericLong, v01,
			data.NewField("node", nil, []string{"a", "a"}), data.NewField("x", nil, []float64{1, 2}))},
			exprs: []Query{q("C", threshold("A", "gt", 0))}, err: "duplicate results with labels"},
		{name: "reader error is the rule's error", frames: data.Frames{data.NewFrame("",
			data.NewField("node", nil, []string{}), data.NewField("x", nil, []string{}))},
			exprs: []Query{q("C", threshold("A", "gt", 0))}, err: "[A] got error: input data must be a wide series but got type not"},
		{name: "unsupported math", frames: long(p(1)), exprs: []Query{q("C", map[string]any{"type": "math", "expression": "abs($A) > 1"})},
			err: "unsupported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := Rule{Condition: "C", Data: append([]Query{{RefID: "A", DatasourceUID: "ds"}}, c.exprs...)}
			res := Evaluate(r, func(Query) (data.Frames, error) { return c.frames, nil })
			if c.err != "" {
				if len(res) != 1 || res[0].State != Error || !strings.Contains(res[0].Err.Error(), c.err) {
					t.Fatalf("got %+v, want one Error %q", res, c.err)
				}
				if c.name == "unsupported math" && !errors.Is(res[0].Err, ErrUnsupported) {
					t.Errorf("%v is not ErrUnsupported", res[0].Err)
				}
				return
			}
			var g []string
			for _, in := range res {
				g = append(g, labelKey(in.Labels)+":"+string(in.State))
			}
			if strings.Join(g, " ") != c.want {
				t.Errorf("got %s, want %s", strings.Join(g, " "), c.want)
			}
		})
	}
}

func TestMapped(t *testing.T) {
	r := Rule{NoDataState: "OK", ExecErrState: "Error"}
	for s, want := range map[State]State{StateNoData: Normal, Error: Error, Alerting: Alerting, Normal: Normal} {
		if g := r.Mapped(s); g != want {
			t.Errorf("%s mapped to %s, want %s", s, g, want)
		}
	}
	if g := (Rule{}).Mapped(StateNoData); g != StateNoData {
		t.Errorf("default NoData mapped to %s", g)
	}
}
