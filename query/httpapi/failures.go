package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/query"
)

// The failure reports' parameters: each route takes only its own, and a name it does not take is
// a 400 naming it, so that a misspelt lookback is not silently the default.
var (
	healthParams        = []string{"lookback", "silent", "filter"}
	drainParams         = []string{"lookback", "silent", "limit", "filter"}
	interruptionsParams = []string{"since", "from", "to", "within", "idle", "filter"}
)

// only fails on a parameter not in names.
func (p *params) only(names []string) {
	for name := range p.r.URL.Query() {
		if !slices.Contains(names, name) {
			p.fail(bad(name, "not a parameter of %s; it takes %s", p.r.URL.Path, strings.Join(names, ", ")))
		}
	}
}

// integer reads a whole number in [lo, hi].
func (p *params) integer(name string, def, lo, hi int) int {
	v := p.r.URL.Query().Get(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(bad(name, "%q is not a whole number from %d to %d", v, lo, hi))
		return def
	}
	return n
}

func (a *api) fleetWindow(p *params) query.FleetWindow {
	return query.FleetWindow{At: a.now(), Lookback: p.dur("lookback", query.DefaultLookback),
		Silent: p.dur("silent", query.DefaultSilent), Filters: p.filters()}
}

func (a *api) health(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	p.only(healthParams)
	win := a.fleetWindow(p)
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.Health(r.Context(), a.s, win)
	a.reply(w, out, err)
}

func (a *api) drain(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	p.only(drainParams)
	win := a.fleetWindow(p)
	limit := p.integer("limit", query.DefaultDrainMax, 1, query.MaxDrainRows)
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.Drain(r.Context(), a.s, win, limit)
	a.reply(w, out, err)
}

func (a *api) interruptions(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	p.only(interruptionsParams)
	now := a.now()
	from, to := p.window(now, 24*time.Hour)
	within := p.integer("within", int(query.DefaultWithin/time.Second), 1, int(query.MaxWithin/time.Second))
	win := query.JobWindow{From: from, To: to, At: now, Within: time.Duration(within) * time.Second,
		Idle: p.dur("idle", query.DefaultSilent), Filters: p.filters()}
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.Interruptions(r.Context(), a.s, win)
	a.reply(w, out, err)
}
