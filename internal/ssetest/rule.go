package ssetest

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Query is one entry of a provisioned rule's data: a datasource query or, with datasourceUid
// __expr__, a server-side expression.
type Query struct {
	RefID             string                   `yaml:"refId" json:"refId"`
	DatasourceUID     string                   `yaml:"datasourceUid" json:"datasourceUid"`
	RelativeTimeRange struct{ From, To int64 } `yaml:"relativeTimeRange" json:"relativeTimeRange"`
	Model             map[string]any           `yaml:"model" json:"model"`
}

// ExprUID is the datasource UID of server-side expressions in provisioning files.
const ExprUID = "__expr__"

// Rule is the part of a provisioned Grafana-managed alert rule that decides its state.
type Rule struct {
	UID          string            `yaml:"uid"`
	Title        string            `yaml:"title"`
	Condition    string            `yaml:"condition"`
	NoDataState  string            `yaml:"noDataState"`
	ExecErrState string            `yaml:"execErrState"`
	Annotations  map[string]string `yaml:"annotations"`
	Labels       map[string]string `yaml:"labels"`
	Data         []Query           `yaml:"data"`
}

// State is an alert instance's state after one evaluation, before the pending period.
type State string

// The evaluation states (https://grafana.com/docs/grafana/latest/alerting/fundamentals/alert-rule-evaluation/nodata-and-error-states/).
const (
	Normal      State = "Normal"
	Alerting    State = "Alerting"
	StateNoData State = "NoData"
	Error       State = "Error"
)

// Instance is one alert instance of an evaluation.
type Instance struct {
	Labels data.Labels
	State  State
	Value  *float64 // the condition's value; nil for NoData and Error
	Err    error    // Error only
}

// Fetch runs a rule's datasource query as Grafana would send it and returns the response's frames,
// or its error (a response error is a query failure: the rule is in Error).
type Fetch func(q Query) (data.Frames, error)

// Evaluate runs the rule's queries and expressions in dependency order and reads the condition's
// result as Grafana's alerting does. An evaluation that fails is one Error instance.
func Evaluate(r Rule, fetch Fetch) []Instance {
	res, err := evaluate(r, fetch)
	if err != nil {
		return []Instance{{State: Error, Err: err}}
	}
	return res
}

func evaluate(r Rule, fetch Fetch) ([]Instance, error) {
	byRef := map[string]Query{}
	for _, q := range r.Data {
		if _, dup := byRef[q.RefID]; dup {
			return nil, fmt.Errorf("refId %s used twice", q.RefID)
		}
		byRef[q.RefID] = q
	}
	if _, ok := byRef[r.Condition]; !ok {
		return nil, fmt.Errorf("condition %s is not one of the rule's queries", r.Condition)
	}
	done := map[string]Results{}
	var run func(ref string, depth int) (Results, error)
	run = func(ref string, depth int) (Results, error) {
		if v, ok := done[ref]; ok {
			return v, nil
		}
		q, ok := byRef[ref]
		if !ok {
			return nil, fmt.Errorf("expression reads %s, which the rule does not have", ref)
		}
		if depth > len(byRef) {
			return nil, fmt.Errorf("expression %s: cycle", ref)
		}
		var out Results
		var err error
		if q.DatasourceUID != ExprUID {
			var frames data.Frames
			if frames, err = fetch(q); err != nil {
				return nil, fmt.Errorf("[%s] query: %w", ref, err)
			}
			if out, err = Convert(frames); err != nil {
				return nil, fmt.Errorf("[%s] got error: %w", ref, err)
			}
		} else if out, err = expr(q, func(in string) (Results, error) { return run(in, depth+1) }); err != nil {
			return nil, fmt.Errorf("[%s] %w", ref, err)
		}
		done[ref] = out
		return out, nil
	}
	cond, err := run(r.Condition, 0)
	if err != nil {
		return nil, err
	}
	return instances(cond)
}

// instances reads the condition's values as alert instances
// (https://grafana.com/docs/grafana/latest/alerting/fundamentals/alert-rules/queries-conditions/: the
// condition's result per series is 0, false, or non-zero, firing; "only reduced data can be alerted
// on"; each instance is identified by its label set, so two results with the same labels cannot be told
// apart and the evaluation fails).
func instances(cond Results) ([]Instance, error) {
	if len(cond) == 0 || cond.isNoData() {
		return []Instance{{State: StateNoData}}, nil
	}
	seen := map[string]bool{}
	var out []Instance
	for _, v := range cond {
		switch v.Kind {
		case Series:
			return nil, errors.New("invalid format of evaluation results for the alert definition: looks like time series data, only reduced data can be alerted on")
		case NoData:
			return nil, errors.New("no data beside other results")
		}
		key := labelKey(v.Labels)
		if seen[key] {
			return nil, fmt.Errorf("frame cannot uniquely be identified by its labels: has duplicate results with labels %s", key)
		}
		seen[key] = true
		in := Instance{Labels: v.Labels, Value: v.Value}
		switch {
		case v.Value == nil:
			in.State = StateNoData
		case *v.Value == 0:
			in.State = Normal
		default:
			in.State = Alerting
		}
		out = append(out, in)
	}
	return out, nil
}

// Mapped is the state Grafana shows once the rule's noDataState and execErrState apply
// (nodata-and-error-states page: NoData and Error "can be configured" to Normal (OK), Alerting, or
// kept). An empty setting is Grafana's default: NoData stays NoData, Error stays Error.
func (r Rule) Mapped(s State) State {
	m := map[string]State{"OK": Normal, "Alerting": Alerting, "NoData": StateNoData, "Error": Error}
	switch s {
	case StateNoData:
		if v, ok := m[r.NoDataState]; ok {
			return v
		}
	case Error:
		if v, ok := m[r.ExecErrState]; ok {
			return v
		}
	}
	return s
}

// expr runs one server-side expression
// (https://grafana.com/docs/grafana/latest/panels-visualizations/query-transform-data/expression-queries/).
func expr(q Query, input func(string) (Results, error)) (Results, error) {
	typ, _ := q.Model["type"].(string)
	switch typ {
	case "reduce":
		in, err := input(strings.TrimPrefix(str(q.Model["expression"]), "$"))
		if err != nil {
			return nil, err
		}
		mode := ""
		if s, ok := q.Model["settings"].(map[string]any); ok {
			mode = str(s["mode"])
		}
		return reduce(in, str(q.Model["reducer"]), mode)
	case "threshold":
		in, err := input(strings.TrimPrefix(str(q.Model["expression"]), "$"))
		if err != nil {
			return nil, err
		}
		conds, _ := q.Model["conditions"].([]any)
		if len(conds) != 1 {
			return nil, fmt.Errorf("%w: threshold with %d conditions", ErrUnsupported, len(conds))
		}
		c, _ := conds[0].(map[string]any)
		ev, _ := c["evaluator"].(map[string]any)
		var params []float64
		ps, _ := ev["params"].([]any)
		for _, p := range ps {
			f, ok := number(p)
			if !ok {
				return nil, fmt.Errorf("threshold param %v is not a number", p)
			}
			params = append(params, f)
		}
		cmp, err := thresholdFunc(str(ev["type"]), params)
		if err != nil {
			return nil, err
		}
		return mapValues(in, cmp), nil
	case "math":
		return math1(str(q.Model["expression"]), input)
	}
	return nil, fmt.Errorf("%w: expression type %q", ErrUnsupported, typ)
}

// reduce turns each series into one number with the series' labels; a number passes through and no
// data stays no data. Modes (Reduce docs): strict — a null or NaN point makes the result NaN;
// dropNN — nulls and NaN are left out; replaceNN — they are replaced by settings.replaceWithValue
// (not supported here).
func reduce(in Results, reducer, mode string) (Results, error) {
	if in.isNoData() {
		return noData, nil
	}
	if mode != "" && mode != "strict" && mode != "dropNN" {
		return nil, fmt.Errorf("%w: reduce mode %q", ErrUnsupported, mode)
	}
	var out Results
	for _, v := range in {
		switch v.Kind {
		case Number:
			out = append(out, v)
			continue
		case NoData:
			out = append(out, v)
			continue
		}
		var xs []float64
		nan := false
		for _, p := range v.Points {
			switch {
			case p == nil || math.IsNaN(*p):
				if mode == "dropNN" {
					continue
				}
				nan = true
			default:
				xs = append(xs, *p)
			}
		}
		r := math.NaN()
		switch reducer {
		case "count":
			r = float64(len(v.Points))
			if mode == "dropNN" {
				r = float64(len(xs))
			}
			nan = false
		case "sum":
			if len(xs) > 0 {
				r = 0
				for _, x := range xs {
					r += x
				}
			}
		case "mean":
			if len(xs) > 0 {
				r = 0
				for _, x := range xs {
					r += x
				}
				r /= float64(len(xs))
			}
		case "min":
			if len(xs) > 0 {
				r = slices.Min(xs)
			}
		case "max":
			if len(xs) > 0 {
				r = slices.Max(xs)
			}
		case "last":
			if len(xs) > 0 {
				r = xs[len(xs)-1]
			}
		default:
			return nil, fmt.Errorf("%w: reducer %q", ErrUnsupported, reducer)
		}
		if nan {
			r = math.NaN()
		}
		out = append(out, Value{Kind: Number, Name: v.Name, Labels: v.Labels, Value: &r})
	}
	return out, nil
}

// thresholdFunc is the Threshold evaluator: 1 when the condition holds, 0 when not (Threshold docs:
// is above, is below, is within range (exclusive), is outside range, and the -or-equal and included
// variants).
func thresholdFunc(typ string, p []float64) (func(float64) bool, error) {
	need := 1
	if strings.Contains(typ, "range") {
		need = 2
	}
	if len(p) < need {
		return nil, fmt.Errorf("threshold %s needs %d params, has %d", typ, need, len(p))
	}
	switch typ {
	case "gt":
		return func(x float64) bool { return x > p[0] }, nil
	case "lt":
		return func(x float64) bool { return x < p[0] }, nil
	case "gte":
		return func(x float64) bool { return x >= p[0] }, nil
	case "lte":
		return func(x float64) bool { return x <= p[0] }, nil
	case "eq":
		return func(x float64) bool { return x == p[0] }, nil
	case "ne":
		return func(x float64) bool { return x != p[0] }, nil
	case "within_range":
		return func(x float64) bool { return x > p[0] && x < p[1] }, nil
	case "outside_range":
		return func(x float64) bool { return x < p[0] || x > p[1] }, nil
	case "within_range_included":
		return func(x float64) bool { return x >= p[0] && x <= p[1] }, nil
	case "outside_range_included":
		return func(x float64) bool { return x <= p[0] || x >= p[1] }, nil
	}
	return nil, fmt.Errorf("%w: threshold type %q", ErrUnsupported, typ)
}

// mapValues applies a comparison to every number and every point, keeping labels; a null stays null.
// A series stays a series (a Threshold does not reduce: the condition then fails as time series data).
func mapValues(in Results, f func(float64) bool) Results {
	if in.isNoData() {
		return noData
	}
	b := func(p *float64) *float64 {
		if p == nil {
			return nil
		}
		v := 0.0
		if f(*p) {
			v = 1
		}
		return &v
	}
	out := make(Results, 0, len(in))
	for _, v := range in {
		w := v
		switch v.Kind {
		case Number:
			w.Value = b(v.Value)
		case Series:
			w.Points = make([]*float64, len(v.Points))
			for i, p := range v.Points {
				w.Points[i] = b(p)
			}
		}
		out = append(out, w)
	}
	return out
}

var mathForm = regexp.MustCompile(`^\s*(\$\{?[A-Za-z0-9_]+\}?|-?[0-9.]+(?:e-?[0-9]+)?)\s*(>=|<=|==|!=|>|<)\s*(\$\{?[A-Za-z0-9_]+\}?|-?[0-9.]+(?:e-?[0-9]+)?)\s*$`)

// math1 is the Math expression in its comparison form, a variable against a constant ("$A > 0"):
// relational operators "return 0 for false 1 for true" (Math docs). Other forms are unsupported.
func math1(e string, input func(string) (Results, error)) (Results, error) {
	m := mathForm.FindStringSubmatch(e)
	if m == nil {
		return nil, fmt.Errorf("%w: math %q (only $VAR <op> constant)", ErrUnsupported, e)
	}
	ref := func(s string) string { return strings.Trim(strings.TrimPrefix(s, "$"), "{}") }
	varLeft := strings.HasPrefix(m[1], "$")
	if varLeft == strings.HasPrefix(m[3], "$") {
		return nil, fmt.Errorf("%w: math %q (only $VAR <op> constant)", ErrUnsupported, e)
	}
	v, c := m[1], m[3]
	if !varLeft {
		v, c = m[3], m[1]
	}
	k, err := strconv.ParseFloat(c, 64)
	if err != nil {
		return nil, fmt.Errorf("math %q: %w", e, err)
	}
	in, err := input(ref(v))
	if err != nil {
		return nil, err
	}
	op := m[2]
	cmp := func(x float64) bool {
		a, b := x, k
		if !varLeft {
			a, b = k, x
		}
		switch op {
		case ">":
			return a > b
		case "<":
			return a < b
		case ">=":
			return a >= b
		case "<=":
			return a <= b
		case "==":
			return a == b
		}
		return a != b
	}
	return mapValues(in, cmp), nil
}

func str(v any) string { s, _ := v.(string); return s }

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}
