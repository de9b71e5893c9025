package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/query"
)

var eventLogParams = []string{"since", "from", "to", "kinds", "limit", "filter"}

// eventLog is GET /api/v1/event_log: the newest GPU events of the window (default the last hour),
// at most limit (default 100, at most query.EventsMax), each XID with what NVIDIA's Xid catalog
// says of it; kinds=xid,ecc_dbe narrows the kinds.
func (a *api) eventLog(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	p.only(eventLogParams)
	from, to := p.window(a.now(), time.Hour)
	q := query.EventQuery{From: from, To: to, Filters: p.filters(), Newest: true,
		Limit: p.integer("limit", 100, 1, query.EventsMax)}
	if k := p.str("kinds", ""); k != "" {
		q.Kinds = strings.Split(k, ",")
	}
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	out, err := query.Events(r.Context(), a.s, q)
	a.reply(w, out, err)
}
