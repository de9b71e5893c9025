// Package ssetest evaluates Grafana-managed alert rules in tests the way Grafana does: a datasource's
// frames are read into server-side expression (SSE) values by Grafana's published rules (the data
// plane contract and the SSE docs), the rule's expressions (Reduce, Threshold, Math) run on them, and
// the condition's result becomes alert instances in Normal, Alerting, NoData or Error. It is written
// from those documents and from the Apache-2.0 reference readers in github.com/grafana/dataplane
// (sdata), not from Grafana's own (AGPL) code, which this project must not use.
//
// Each rule below cites the page it follows. Where the documents are silent and Grafana's behaviour is
// known only from its issue tracker, the issue is cited instead.
package ssetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Kind is what one SSE value is.
type Kind int

const (
	// NoData is the value SSE holds for a query that answered nothing.
	NoData Kind = iota
	// Number is one labelled number (a nil Value is a null).
	Number
	// Series is one labelled time series.
	Series
)

func (k Kind) String() string {
	switch k {
	case Number:
		return "number"
	case Series:
		return "series"
	}
	return "no data"
}

// Value is one item of a refID's result set.
type Value struct {
	Kind   Kind
	Name   string
	Labels data.Labels
	Value  *float64    // Number
	Times  []time.Time // Series
	Points []*float64  // Series, one per time
}

// Results are the values one query or expression produced.
type Results []Value

// isNoData: a result set that is one NoData value, as SSE passes it on.
func (r Results) isNoData() bool { return len(r) == 1 && r[0].Kind == NoData }

var noData = Results{{Kind: NoData}}

// Convert reads what a datasource returned for one query into SSE values, as alerting (which does not
// allow long frames) reads it.
//
// Dataplane path: a first frame typed with a numeric or time series kind and a version above 0.0 is
// read by its declared type ("Versions greater than 0.0 correspond to the dataplane contract",
// grafana-plugin-sdk-go data.FrameMeta.TypeVersion; https://grafana.com/developers/dataplane).
// Anything else goes through SSE's legacy rules (https://grafana.com/docs/grafana/latest/panels-visualizations/query-transform-data/expression-queries/).
func Convert(frames data.Frames) (Results, error) {
	// No frames at all: no data (https://grafana.com/docs/grafana/latest/alerting/fundamentals/alert-rule-evaluation/nodata-and-error-states/:
	// "the alert rule query runs successfully but returns no data points").
	if len(frames) == 0 {
		return noData, nil
	}
	if f := frames[0]; f != nil && f.Meta != nil && f.Meta.TypeVersion.Greater(data.FrameTypeVersion{0, 0}) {
		switch f.Meta.Type.Kind() {
		case data.KindNumeric:
			return dataplaneNumeric(frames)
		case data.KindTimeSeries:
			return dataplaneTimeSeries(frames)
		}
	}
	return legacy(frames)
}

// dataplaneNumeric follows https://grafana.github.io/dataplane/numeric (NumericWide, NumericMulti,
// NumericLong), and, for an empty collection, "no data".
func dataplaneNumeric(frames data.Frames) (Results, error) {
	first := frames[0]
	var refs []*data.Field // one single-row numeric field per item, labelled
	switch first.Meta.Type {
	case data.FrameTypeNumericWide:
		// NumericWide: one frame, each numeric field an item with its labels; "Any time or string
		// fields" are remainder data, ignored.
		for _, fl := range first.Fields {
			if fl.Type().Numeric() {
				refs = append(refs, fl)
			}
		}
	case data.FrameTypeNumericMulti:
		// NumericMulti: one value field per frame; every frame must carry the type. A first frame
		// with no fields is the empty response.
		if len(first.Fields) == 0 {
			return noData, nil
		}
		for i, f := range frames {
			if f == nil || f.Meta == nil || f.Meta.Type != data.FrameTypeNumericMulti {
				return nil, fmt.Errorf("frame %d has wrong type, expected NumericMulti", i)
			}
			for _, fl := range f.Fields {
				if fl.Type().Numeric() {
					refs = append(refs, fl)
					break
				}
			}
		}
	case data.FrameTypeNumericLong:
		// NumericLong: "Each string column is a dimension, where the field name is the name of the
		// dimension"; every numeric field of every row is an item; "The Labels property of each
		// Field is unused"; time fields are remainder data.
		var strs, nums []*data.Field
		for _, fl := range first.Fields {
			switch {
			case fl.Type().Numeric():
				nums = append(nums, fl)
			case fl.Type() == data.FieldTypeString || fl.Type() == data.FieldTypeNullableString:
				strs = append(strs, fl)
			}
		}
		for row := range first.Rows() {
			l := data.Labels{}
			for _, s := range strs {
				v, ok := s.ConcreteAt(row)
				if !ok {
					// sdata asserts the value is a string; a null dimension has no label value.
					return nil, fmt.Errorf("numeric long: row %d: dimension %q is null", row, s.Name)
				}
				l[s.Name] = v.(string)
			}
			for _, n := range nums {
				one := data.NewFieldFromFieldType(n.Type(), 1)
				one.Name, one.Labels = n.Name, l
				one.Set(0, n.At(row))
				refs = append(refs, one)
			}
		}
	default:
		return nil, fmt.Errorf("kind %s (type %s) not supported by server side expressions", first.Meta.Type.Kind(), first.Meta.Type)
	}
	// An empty collection (a typed frame with no fields, or no rows in numeric long) is no data.
	if len(refs) == 0 {
		return noData, nil
	}
	var out Results
	for _, fl := range refs {
		// "There should be no rows or a single row in the frame": a field without its row has no
		// value; alone it is no data, beside others it cannot be read as a number.
		if fl.Len() != 1 {
			if len(refs) == 1 {
				return noData, nil
			}
			return nil, fmt.Errorf("numeric item %s%v has %d rows, want 1", fl.Name, fl.Labels, fl.Len())
		}
		v, err := fl.NullableFloatAt(0)
		if err != nil {
			return nil, fmt.Errorf("numeric item %s: %w", fl.Name, err)
		}
		out = append(out, Value{Kind: Number, Name: fl.Name, Labels: fl.Labels, Value: v})
	}
	return out, nil
}

// dataplaneTimeSeries follows https://grafana.github.io/dataplane/timeseries: TimeSeriesWide (one
// time field, each numeric field a series with its labels), TimeSeriesMulti (one series per frame) and
// TimeSeriesLong (string columns are dimensions, one series per dimension set and numeric field).
func dataplaneTimeSeries(frames data.Frames) (Results, error) {
	var out Results
	for i, f := range frames {
		if f == nil || f.Meta == nil || f.Meta.Type != frames[0].Meta.Type {
			return nil, fmt.Errorf("frame %d: every frame must have the type %s", i, frames[0].Meta.Type)
		}
		if len(f.Fields) == 0 { // the empty response
			continue
		}
		times := f.TypeIndices(data.FieldTypeTime)
		if len(times) == 0 {
			times = f.TypeIndices(data.FieldTypeNullableTime)
		}
		if len(times) == 0 {
			return nil, fmt.Errorf("frame %d (%s) has no time field", i, f.Meta.Type)
		}
		tf := f.Fields[times[0]]
		ts := make([]time.Time, tf.Len())
		for r := range ts {
			v, ok := tf.ConcreteAt(r)
			if !ok {
				return nil, fmt.Errorf("frame %d: time field has a null at row %d", i, r)
			}
			ts[r] = v.(time.Time)
		}
		switch f.Meta.Type {
		case data.FrameTypeTimeSeriesWide, data.FrameTypeTimeSeriesMulti:
			for _, fl := range f.Fields {
				if !fl.Type().Numeric() {
					continue
				}
				s := Value{Kind: Series, Name: fl.Name, Labels: fl.Labels, Times: ts}
				for r := range ts {
					v, err := fl.NullableFloatAt(r)
					if err != nil {
						return nil, err
					}
					s.Points = append(s.Points, v)
				}
				out = append(out, s)
				if f.Meta.Type == data.FrameTypeTimeSeriesMulti {
					break // "Any value fields after the first" are remainder data
				}
			}
		case data.FrameTypeTimeSeriesLong:
			var strs, nums []*data.Field
			for _, fl := range f.Fields {
				switch {
				case fl.Type().Numeric():
					nums = append(nums, fl)
				case fl.Type() == data.FieldTypeString || fl.Type() == data.FieldTypeNullableString:
					strs = append(strs, fl)
				}
			}
			index := map[string]int{}
			for r := range ts {
				l := data.Labels{}
				for _, s := range strs {
					v, ok := s.ConcreteAt(r)
					if !ok {
						return nil, fmt.Errorf("time series long: row %d: dimension %q is null", r, s.Name)
					}
					l[s.Name] = v.(string)
				}
				for _, n := range nums {
					key := n.Name + l.String()
					j, ok := index[key]
					if !ok {
						j = len(out)
						index[key] = j
						out = append(out, Value{Kind: Series, Name: n.Name, Labels: l})
					}
					v, err := n.NullableFloatAt(r)
					if err != nil {
						return nil, err
					}
					out[j].Times, out[j].Points = append(out[j].Times, ts[r]), append(out[j].Points, v)
				}
			}
		default:
			return nil, fmt.Errorf("type %s not supported by server side expressions", f.Meta.Type)
		}
	}
	if len(out) == 0 {
		return noData, nil
	}
	return out, nil
}

// legacy is SSE's reading of frames without a dataplane type (expression-queries docs, "Data source
// queries"): "a table response that returns a data frame with no time, string columns, and one number
// column" is a set of numbers, "the string columns become labels and the number column the
// corresponding value"; otherwise the data "is generally assumed to be labeled time series data" and
// alerting reads only wide time series.
func legacy(frames data.Frames) (Results, error) {
	if len(frames) == 1 {
		f := frames[0]
		if len(f.Fields) == 0 {
			return noData, nil // an untyped frame with no fields is no data
		}
		if f.TimeSeriesSchema().Type == data.TimeSeriesTypeNot && numberTable(f) {
			var out Results
			for r := range f.Rows() {
				v := Value{Kind: Number}
				for _, fl := range f.Fields {
					if fl.Type().Numeric() {
						x, err := fl.NullableFloatAt(r)
						if err != nil {
							return nil, err
						}
						v.Name, v.Value = fl.Name, x
						continue
					}
					s, ok := fl.ConcreteAt(r)
					if !ok {
						return nil, fmt.Errorf("number table: row %d: label column %q is null", r, fl.Name)
					}
					if v.Labels == nil {
						v.Labels = data.Labels{}
					}
					v.Labels[fl.Name] = s.(string)
				}
				out = append(out, v)
			}
			if len(out) == 0 {
				return noData, nil
			}
			return out, nil
		}
	}
	var out Results
	for _, f := range frames {
		schema := f.TimeSeriesSchema()
		if schema.Type != data.TimeSeriesTypeWide {
			// A SQL-like frame with no rows reads as no data since Grafana 9.4
			// (https://github.com/grafana/grafana/issues/48014, fixed by grafana/grafana#59121) when it
			// is long; a frame that is not a time series at all stays the error.
			if f.Rows() == 0 && schema.Type == data.TimeSeriesTypeLong {
				continue
			}
			// The message users see in Grafana (e.g. grafana/grafana#46429, #66710).
			return nil, fmt.Errorf("input data must be a wide series but got type %s (input refid)", schema.Type)
		}
		tf := f.Fields[schema.TimeIndex]
		for _, vi := range schema.ValueIndices {
			fl := f.Fields[vi]
			s := Value{Kind: Series, Name: fl.Name, Labels: fl.Labels}
			for r := range f.Rows() {
				t, ok := tf.ConcreteAt(r)
				if !ok {
					return nil, fmt.Errorf("time series: null time at row %d", r)
				}
				v, err := fl.NullableFloatAt(r)
				if err != nil {
					return nil, err
				}
				s.Times, s.Points = append(s.Times, t.(time.Time)), append(s.Points, v)
			}
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return noData, nil
	}
	return out, nil
}

// numberTable: exactly one numeric column and every other column a string.
func numberTable(f *data.Frame) bool {
	nums := 0
	for _, fl := range f.Fields {
		switch t := fl.Type(); {
		case t.Numeric():
			nums++
		case t == data.FieldTypeString || t == data.FieldTypeNullableString:
		default:
			return false
		}
	}
	return nums == 1
}

// ErrUnsupported is an expression this package does not evaluate; a test must not read it as a pass.
var ErrUnsupported = errors.New("ssetest: unsupported expression")

func labelKey(l data.Labels) string {
	if len(l) == 0 {
		return "{}"
	}
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteByte('{')
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q,", k, l[k])
	}
	b.WriteByte('}')
	return b.String()
}
