package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/query"
)

// power is GET /api/v1/power: each cluster's total power draw per second (query.FleetPower) over
// the window (since, default 1h, or from/to), cluster=a|b narrowing the clusters and filter=dim=v
// the GPUs (a filter on anything but the cluster reads gpu_samples), step (default 1s) and agg
// (avg, max, min of a step's seconds), source=raw for the raw rows. The answer is
// {"series": […], "table": …, "rows_read": …}.
func (a *api) power(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	step := p.dur("step", time.Second)
	from, to := p.window(a.now(), time.Hour)
	q := &query.PowerQuery{From: from, To: to, Step: step, Agg: query.Agg(p.str("agg", "avg")), Source: query.Source(p.str("source", "")),
		Filters: p.filters()}
	for _, c := range r.URL.Query()["cluster"] {
		q.Filters = append(q.Filters, query.Filter{Dim: query.Cluster, Values: strings.Split(c, "|")})
	}
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.FleetPower(r.Context(), a.s, q)
	a.reply(w, out, err)
}
