// Package httpapi serves the query layer as JSON over HTTP for dashboards, scripts and the Grafana
// plugin: GET /api/v1/{summary,series,top,silent,stragglers,events,event_log,jobs,health,drain,interruptions,power,sql} (and POST sql). Parameters are query
// strings; a bad one is a 400 whose body names it, a failed query a 502.
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// Handler returns the API's routes over s; now is the clock windows end at (time.Now in production).
func Handler(s store.Store, now func() time.Time) http.Handler {
	a := &api{s: s, now: now}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/summary", a.summary)
	mux.HandleFunc("GET /api/v1/series", a.series)
	mux.HandleFunc("GET /api/v1/top", a.top)
	mux.HandleFunc("GET /api/v1/silent", a.silent)
	mux.HandleFunc("GET /api/v1/stragglers", a.stragglers)
	mux.HandleFunc("GET /api/v1/events", a.events)
	mux.HandleFunc("GET /api/v1/event_log", a.eventLog)
	mux.HandleFunc("GET /api/v1/jobs", a.jobs)
	mux.HandleFunc("GET /api/v1/power", a.power)
	mux.HandleFunc("GET /api/v1/health", a.health)
	mux.HandleFunc("GET /api/v1/drain", a.drain)
	mux.HandleFunc("GET /api/v1/interruptions", a.interruptions)
	mux.HandleFunc("GET /api/v1/sql", a.sql)
	mux.HandleFunc("POST /api/v1/sql", a.sql)
	return mux
}

type api struct {
	s   store.Store
	now func() time.Time
}

// badParam is a client error; its message names the parameter.
type badParam struct{ msg string }

func (e badParam) Error() string { return e.msg }

func bad(name, format string, args ...any) error {
	return badParam{fmt.Sprintf("%s: %s", name, fmt.Sprintf(format, args...))}
}

// params reads query-string values with defaults, keeping the first error.
type params struct {
	r   *http.Request
	err error
}

func (p *params) str(name, def string) string {
	if v := p.r.URL.Query().Get(name); v != "" {
		return v
	}
	return def
}

func (p *params) dur(name string, def time.Duration) time.Duration {
	v := p.r.URL.Query().Get(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		p.fail(bad(name, "%q is not a positive duration like 15m or 24h", v))
		return def
	}
	return d
}

func (p *params) num(name string, def float64) float64 {
	v := p.r.URL.Query().Get(name)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		p.fail(bad(name, "%q is not a number", v))
		return def
	}
	return f
}

// window is [from, to): from/to as RFC 3339 when given, else the last `since` before now.
func (p *params) window(now time.Time, since time.Duration) (time.Time, time.Time) {
	to, from := now, now.Add(-p.dur("since", since))
	if v := p.r.URL.Query().Get("to"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			p.fail(bad("to", "%q is not an RFC 3339 time", v))
		}
		to = t
		from = to.Add(-p.dur("since", since))
	}
	if v := p.r.URL.Query().Get("from"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			p.fail(bad("from", "%q is not an RFC 3339 time", v))
		}
		from = t
	}
	return from, to
}

// filters reads every filter=dim=v1|v2 parameter; the first bad one is the request's error.
func (p *params) filters() []query.Filter {
	var out []query.Filter
	for _, f := range p.r.URL.Query()["filter"] {
		filter, err := query.ParseFilter(f)
		if err != nil {
			p.fail(bad("filter", "%v", err))
			continue
		}
		out = append(out, filter)
	}
	return out
}

func (p *params) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (a *api) reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusBadGateway
		var bp badParam
		if errors.As(err, &bp) || errors.Is(err, query.ErrInvalid) {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

func (a *api) summary(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	from, to := p.window(a.now(), 15*time.Minute)
	top := int(p.num("top", 5))
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	if top < 0 || top > 1000 {
		a.reply(w, nil, bad("top", "%d: must be 0..1000", top))
		return
	}
	sum, err := query.FleetSummary(r.Context(), a.s, from, to, top)
	a.reply(w, sum, err)
}

func (a *api) series(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	step := p.dur("step", time.Minute)
	from, to := p.window(a.now(), time.Hour)
	q := &query.Query{Metric: p.str("metric", ""), Agg: query.Agg(p.str("agg", "avg")), Step: step, Reason: p.str("reason", ""),
		Fill: p.str("fill", "") == "true", Source: query.Source(p.str("source", ""))}
	if step > 0 {
		q.From, q.To = query.SnapWindow(from, to, step)
	}
	if by := p.str("by", ""); by != "" {
		groups, err := query.ParseDims(strings.Split(by, ","))
		if err != nil {
			p.fail(bad("by", "%v", err))
		}
		q.GroupBy = groups
	}
	q.Filters = p.filters()
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	series, err := query.Run(r.Context(), a.s, q)
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	if series == nil {
		series = []query.Series{}
	}
	a.replySeries(w, series)
}

func (a *api) top(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	from, to := p.window(a.now(), time.Hour)
	metric, agg, order := p.str("metric", "temp_gpu_c"), p.str("agg", "max"), p.str("order", "desc")
	k := int(p.num("k", 10))
	if order != "asc" && order != "desc" {
		p.fail(bad("order", "%q: asc or desc", order))
	}
	filters := p.filters()
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.TopGPUs(r.Context(), a.s, metric, agg, order == "asc", k, from, to, filters...)
	a.reply(w, out, err)
}

func (a *api) silent(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	lookback, silent := p.dur("lookback", time.Hour), p.dur("silent", 2*time.Minute)
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.StoppedReporting(r.Context(), a.s, a.now(), lookback, silent)
	a.reply(w, out, err)
}

func (a *api) stragglers(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	from, to := p.window(a.now(), time.Hour)
	ratio := p.num("ratio", 0.5)
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.Stragglers(r.Context(), a.s, from, to, ratio)
	a.reply(w, out, err)
}

func (a *api) events(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	from, to := p.window(a.now(), 24*time.Hour)
	by := p.str("by", "model")
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.EventCounts(r.Context(), a.s, by, from, to)
	a.reply(w, out, err)
}

func (a *api) jobs(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	from, to := p.window(a.now(), 24*time.Hour)
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.JobUsages(r.Context(), a.s, from, to)
	a.reply(w, out, err)
}
