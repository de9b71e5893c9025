package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// The failure query types: "health" (GPUs by state: a frame by state, one by cluster, one by
// model), "drain" (the GPUs to act on) and "interruptions" (jobs ended after a fatal event, by
// cause). Health and drain are the fleet as of the end of the panel's range (or now, if that is
// later); interruptions counts the jobs that ended within the range.

func (d *Datasource) fleetWindow(q Query, to time.Time) (query.FleetWindow, error) {
	w := query.FleetWindow{At: to}
	if now := d.now().UTC(); now.Before(to) {
		w.At = now
	}
	var err error
	if w.Lookback, err = duration("lookback", q.Lookback); err != nil {
		return w, err
	}
	if w.Silent, err = duration("silent", q.Silent); err != nil {
		return w, err
	}
	w.Filters, err = q.filters()
	return w, err
}

func (d *Datasource) jobWindow(q Query, from, to time.Time) (query.JobWindow, error) {
	w := query.JobWindow{From: from, To: to, At: d.now().UTC(), Within: time.Duration(q.Within) * time.Second}
	if q.Within < 0 {
		return w, fmt.Errorf("%w: within: %d: seconds, at least 1", query.ErrInvalid, q.Within)
	}
	var err error
	if w.Idle, err = duration("silent", q.Silent); err != nil {
		return w, err
	}
	w.Filters, err = q.filters()
	return w, err
}

// duration parses a Go duration ("168h", "2m"); empty is the default (0).
func duration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%w: %s: %q is not a positive duration like 2m or 168h", query.ErrInvalid, field, s)
	}
	return v, nil
}

func drainLimit(q Query) int {
	if q.Limit == 0 {
		return query.DefaultDrainMax
	}
	return q.Limit
}

// failureSQL is what a failure query runs, for the compile resource.
func (d *Datasource) failureSQL(q Query, from, to time.Time) (string, store.Params, error) {
	switch q.QueryType {
	case "health":
		w, err := d.fleetWindow(q, to)
		if err != nil {
			return "", nil, err
		}
		return query.HealthSQL(d.st.Database(), w)
	case "drain":
		w, err := d.fleetWindow(q, to)
		if err != nil {
			return "", nil, err
		}
		return query.DrainSQL(d.st.Database(), w, drainLimit(q))
	}
	w, err := d.jobWindow(q, from, to)
	if err != nil {
		return "", nil, err
	}
	return query.InterruptionsSQL(d.st.Database(), w)
}

func (d *Datasource) failures(ctx context.Context, q Query, from, to time.Time) ([]*data.Frame, error) {
	switch q.QueryType {
	case "health":
		w, err := d.fleetWindow(q, to)
		if err != nil {
			return nil, err
		}
		r, err := query.Health(ctx, d.st, w)
		if err != nil {
			return nil, err
		}
		return healthFrames(r), nil
	case "drain":
		w, err := d.fleetWindow(q, to)
		if err != nil {
			return nil, err
		}
		r, err := query.Drain(ctx, d.st, w, drainLimit(q))
		if err != nil {
			return nil, err
		}
		return []*data.Frame{drainFrame(r)}, nil
	}
	w, err := d.jobWindow(q, from, to)
	if err != nil {
		return nil, err
	}
	r, err := query.Interruptions(ctx, d.st, w)
	if err != nil {
		return nil, err
	}
	return []*data.Frame{interruptionsFrame(r)}, nil
}

// healthStates are the health frames' count columns, in state order.
var healthStates = []struct {
	name  string
	count func(query.HealthCounts) uint64
}{
	{"healthy", func(c query.HealthCounts) uint64 { return c.Healthy }},
	{"degraded", func(c query.HealthCounts) uint64 { return c.Degraded }},
	{"restart_app", func(c query.HealthCounts) uint64 { return c.RestartApp }},
	{"reset_gpu", func(c query.HealthCounts) uint64 { return c.ResetGPU }},
	{"reboot_node", func(c query.HealthCounts) uint64 { return c.RebootNode }},
	{"service", func(c query.HealthCounts) uint64 { return c.Service }},
	{query.ActionStoppedReporting, func(c query.HealthCounts) uint64 { return c.StoppedReporting }},
	{"unknown", func(c query.HealthCounts) uint64 { return c.Unknown }},
}

// healthFrames: the fleet by state (state, gpus: a bar gauge or pie chart), then a table per
// cluster and per model with a column per state.
func healthFrames(r *query.HealthReport) []*data.Frame {
	states, counts := make([]string, 0, len(healthStates)), make([]uint64, 0, len(healthStates))
	for _, s := range healthStates {
		states, counts = append(states, s.name), append(counts, s.count(r.Fleet))
	}
	byState := data.NewFrame("health by state", data.NewField("state", nil, states), data.NewField("gpus", nil, counts))
	groups := func(name, key string, gs []query.HealthGroup) *data.Frame {
		keys, gpus := make([]string, 0, len(gs)), make([]uint64, 0, len(gs))
		for _, g := range gs {
			keys, gpus = append(keys, g.Key), append(gpus, g.GPUs)
		}
		f := data.NewFrame(name, data.NewField(key, nil, keys), data.NewField("gpus", nil, gpus))
		for _, s := range healthStates {
			vs := make([]uint64, 0, len(gs))
			for _, g := range gs {
				vs = append(vs, s.count(g.HealthCounts))
			}
			f.Fields = append(f.Fields, data.NewField(s.name, nil, vs))
		}
		return f
	}
	return []*data.Frame{byState, groups("health by cluster", "cluster", r.ByCluster), groups("health by model", "model", r.ByModel)}
}

// drainFrame is the drain list as a table, most severe first; a list cut at the limit says so.
func drainFrame(r *query.DrainReport) *data.Frame {
	n := len(r.GPUs)
	cluster, node, uuid, model := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	action, reason, job := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	gpu, severity := make([]uint64, 0, n), make([]uint64, 0, n)
	since := make([]time.Time, 0, n)
	for _, g := range r.GPUs {
		cluster, node, gpu, uuid, model = append(cluster, g.Cluster), append(node, g.Node), append(gpu, g.GPU), append(uuid, g.UUID), append(model, g.Model)
		action, reason, since, job = append(action, g.Action), append(reason, g.Reason), append(since, g.Since), append(job, g.Job)
		severity = append(severity, g.Severity)
	}
	f := data.NewFrame("drain",
		data.NewField("cluster", nil, cluster), data.NewField("node", nil, node), data.NewField("gpu", nil, gpu),
		data.NewField("uuid", nil, uuid), data.NewField("model", nil, model), data.NewField("action", nil, action),
		data.NewField("reason", nil, reason), data.NewField("since", nil, since), data.NewField("job_id", nil, job),
		data.NewField("severity", nil, severity))
	f.Meta = &data.FrameMeta{Custom: map[string]any{"at": r.At, "truncated": r.Truncated}}
	if r.Truncated {
		f.Meta.Notices = []data.Notice{{Severity: data.NoticeSeverityWarning,
			Text: fmt.Sprintf("the drain list has more than %d GPUs: the most severe are shown; raise the query's limit (at most %d)", n, query.MaxDrainRows)}}
	}
	return f
}

// interruptionsFrame is the root-cause table; the frame's custom metadata carries how many jobs
// ended and how many of them were interrupted.
func interruptionsFrame(r *query.InterruptionReport) *data.Frame {
	n := len(r.Causes)
	category, exCluster, exJob, exEvent, exUUID := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	count, share, exAt := make([]uint64, 0, n), make([]float64, 0, n), make([]time.Time, 0, n)
	for _, c := range r.Causes {
		category, count, share = append(category, c.Category), append(count, c.Interruptions), append(share, c.Share)
		exCluster, exJob, exEvent, exUUID, exAt = append(exCluster, c.ExampleCluster), append(exJob, c.ExampleJob),
			append(exEvent, c.ExampleEvent), append(exUUID, c.ExampleUUID), append(exAt, c.ExampleAt)
	}
	shareField := data.NewField("share", nil, share)
	shareField.Config = &data.FieldConfig{Unit: "percentunit"}
	f := data.NewFrame("interruptions",
		data.NewField("category", nil, category), data.NewField("interruptions", nil, count), shareField,
		data.NewField("example_cluster", nil, exCluster), data.NewField("example_job", nil, exJob),
		data.NewField("example_event", nil, exEvent), data.NewField("example_uuid", nil, exUUID), data.NewField("example_at", nil, exAt))
	f.Meta = &data.FrameMeta{Custom: map[string]any{"jobs_ended": r.JobsEnded, "interruptions": r.Interruptions}}
	return f
}
