package plugin

import (
	"context"
	"maps"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/query"
)

// The "jobs" query type: what each job used over the panel's range (GPUs, GPU-hours, mean
// utilisation, energy), from gpu_1m — the answer of `gpufleet query --report jobs` and
// /api/v1/jobs, with the panel's filters. The dashboards' "Energy per job" table reads it: the same
// figures from the raw rows took 14 s over 24 h of 1,024 GPUs sampled every second (docs/schema.md).

func (d *Datasource) jobs(ctx context.Context, q Query, from, to time.Time) ([]*data.Frame, error) {
	filters, err := q.filters()
	if err != nil {
		return nil, err
	}
	var usage []query.JobUsage
	if !q.matchesNothing() {
		if usage, err = query.JobUsages(ctx, d.st, from, to, filters...); err != nil {
			return nil, err
		}
	}
	return []*data.Frame{jobsFrame(usage)}, nil
}

func (d *Datasource) jobsCompiled(q Query, from, to time.Time) (*Compiled, error) {
	filters, err := q.filters()
	if err != nil {
		return nil, err
	}
	sql, p := query.JobUsageSQL(d.st.Database(), filters...)
	maps.Copy(p, query.MinuteWindow(from, to))
	return &Compiled{SQL: sql, Params: p, Table: schema.GPU1m}, nil
}

// jobsFrame is one row per job, most GPU-hours first; kWh per GPU-hour is energy over GPU-hours.
func jobsFrame(usage []query.JobUsage) *data.Frame {
	n := len(usage)
	job, gpus := make([]string, n), make([]int64, n)
	hours, util, kwh, perHour := make([]float64, n), make([]float64, n), make([]float64, n), make([]*float64, n)
	for i, u := range usage {
		job[i], gpus[i], hours[i], util[i], kwh[i] = u.Job, int64(u.GPUs), u.GPUHours, u.MeanUtil, u.EnergyKWh
		if u.GPUHours > 0 {
			v := u.EnergyKWh / u.GPUHours
			perHour[i] = &v
		}
	}
	withUnit := func(f *data.Field, unit string) *data.Field {
		f.Config = &data.FieldConfig{Unit: unit}
		return f
	}
	return data.NewFrame("jobs",
		data.NewField("job_id", nil, job),
		data.NewField("gpus", nil, gpus),
		data.NewField("gpu_hours", nil, hours),
		withUnit(data.NewField("mean_util_pct", nil, util), "percent"),
		withUnit(data.NewField("energy_kwh", nil, kwh), "kwatth"),
		withUnit(data.NewField("kwh_per_gpu_hour", nil, perHour), "kwatth"),
	)
}
