package query

import (
	"fmt"
	"strings"
	"time"
)

// DimByName maps the names users type (cluster, node, gpu, model, job, rack, pool) to dimensions.
func DimByName(name string) (Dim, bool) {
	switch name {
	case "cluster":
		return Cluster, true
	case "node":
		return Node, true
	case "gpu", "uuid":
		return GPU, true
	case "model":
		return Model, true
	case "job", "job_id":
		return Job, true
	case "rack":
		return Rack, true
	case "pool":
		return Pool, true
	}
	return "", false
}

// DimNames lists the names DimByName takes, for messages.
const DimNames = "cluster, node, gpu, model, job, rack, pool"

// ParseDims reads group-by names; the error names the first unknown one.
func ParseDims(names []string) ([]Dim, error) {
	var out []Dim
	for _, n := range names {
		d, ok := DimByName(strings.TrimSpace(n))
		if !ok {
			return nil, fmt.Errorf("%q is not one of %s", n, DimNames)
		}
		out = append(out, d)
	}
	return out, nil
}

// ParseFilter reads a filter written dim=v1|v2.
func ParseFilter(s string) (Filter, error) {
	name, values, ok := strings.Cut(s, "=")
	d, known := DimByName(name)
	if !ok || !known || values == "" {
		return Filter{}, fmt.Errorf("%q: want dim=v1|v2 with dim one of %s", s, DimNames)
	}
	return Filter{Dim: d, Values: strings.Split(values, "|")}, nil
}

// SnapWindow widens [from, to) to whole steps, as Grafana does, so that a rollup can answer; the
// last step may be the one still filling.
func SnapWindow(from, to time.Time, step time.Duration) (time.Time, time.Time) {
	f, t := from.Truncate(step), to.Truncate(step)
	if t.Before(to) {
		t = t.Add(step)
	}
	return f, t
}
