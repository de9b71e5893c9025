package plugin

import (
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/query"
)

// gaugeUnits maps the registry's units to Grafana's unit ids, so that panels label axes and
// values without the user picking a unit.
var gaugeUnits = map[string]string{
	"%": "percent", "°C": "celsius", "W": "watt", "MHz": "rotmhz", "MiB": "mbytes", "KiB/s": "KiBs",
}

// unit is the Grafana unit of metric aggregated by agg, or "" when Grafana has none for it. A
// count of readings has no unit; a counter's increase keeps the counter's unit and its rate is
// that unit per second.
func unit(metric string, agg query.Agg) string {
	i := gpumetric.IndexOfColumn(metric)
	if i < 0 || agg == query.Count {
		return ""
	}
	if agg == query.Share {
		return "percent"
	}
	m := gpumetric.All()[i]
	if m.Kind == gpumetric.Gauge {
		return gaugeUnits[m.Unit]
	}
	switch {
	case m.Unit == "mJ" && agg == query.Rate:
		return "mwatt" // mJ/s
	case m.Unit == "mJ":
		return "suffix: mJ"
	case m.Unit == "KiB" && agg == query.Rate:
		return "KiBs"
	case m.Unit == "KiB":
		return "kbytes"
	case m.Unit == "count" && agg == query.Rate:
		return "cps"
	}
	return ""
}

// setUnit gives every numeric field of f the unit.
func setUnit(f *data.Frame, u string) *data.Frame {
	if u == "" {
		return f
	}
	for _, fl := range f.Fields {
		if fl.Type().Numeric() {
			if fl.Config == nil {
				fl.Config = &data.FieldConfig{}
			}
			fl.Config.Unit = u
		}
	}
	return f
}
