package plugin

import (
	"context"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/query"
)

// The power query type: each cluster's total power draw per second (query.FleetPower), a series
// per cluster in W. At a step over a second (a wide window in a narrow panel), agg says what a
// point is of its seconds' totals: avg (default), max (the peak second, the swing a supply must
// carry) or min. Filters on the cluster read cluster_power_1s; on any other label (the fleet
// dashboard's pool) the raw rows.

// powerQuery is the panel query as a query.PowerQuery over [from, to) at step.
func powerQuery(q Query, from, to time.Time, step time.Duration) (*query.PowerQuery, error) {
	filters, err := q.filters()
	if err != nil {
		return nil, err
	}
	return &query.PowerQuery{Filters: filters, From: from, To: to, Step: step, Agg: query.Agg(strings.ToLower(q.Agg))}, nil
}

func (d *Datasource) power(ctx context.Context, q Query, from, to time.Time, step time.Duration) ([]*data.Frame, error) {
	empty := q.matchesNothing()
	pq, err := powerQuery(q.withoutEmptyFilters(), from, to, step)
	if err != nil {
		return nil, err
	}
	var series []query.Series
	if empty {
		// Not run, but still checked, as a series query with a variable that has no options.
		if _, err := pq.Compile(d.st.Database()); err != nil {
			return nil, err
		}
	} else {
		p, err := query.FleetPower(ctx, d.st, pq)
		if err != nil {
			return nil, err
		}
		series = p.Series
	}
	f := wideFrame("power_w", series)
	return []*data.Frame{applyAlias(setUnit(f, "watt"), q.Alias, "power_w")}, nil
}

// powerCompiled is what a power query runs, for the compile resource.
func (d *Datasource) powerCompiled(q Query, from, to time.Time, step time.Duration) (*Compiled, error) {
	pq, err := powerQuery(q.withoutEmptyFilters(), from, to, step)
	if err != nil {
		return nil, err
	}
	c, err := pq.Compile(d.st.Database())
	if err != nil {
		return nil, err
	}
	return &Compiled{SQL: c.SQL, Params: c.Params, Table: c.Table}, nil
}
