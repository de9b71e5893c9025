package plugin

import (
	"regexp"
	"strings"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// aliasRef is a {{name}} reference in an alias; spaces inside the braces are allowed, as in
// Grafana's Prometheus legend format.
var aliasRef = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

// applyAlias names each value field of f by the alias, {{label}} replaced by the field's label
// of that name (empty if it has none) and {{metric}} by the metric, as the series' display name
// (DisplayNameFromDS, which panels show in legends and tooltips and users can still override).
// An empty alias leaves Grafana's naming from labels.
func applyAlias(f *data.Frame, alias, metric string) *data.Frame {
	if strings.TrimSpace(alias) == "" {
		return f
	}
	for _, fl := range f.Fields {
		if fl.Type().Time() {
			continue
		}
		name := aliasRef.ReplaceAllStringFunc(alias, func(ref string) string {
			key := aliasRef.FindStringSubmatch(ref)[1]
			if v, ok := fl.Labels[key]; ok {
				return v
			}
			if key == "metric" {
				return metric
			}
			return ""
		})
		if fl.Config == nil {
			fl.Config = &data.FieldConfig{}
		}
		fl.Config.DisplayNameFromDS = name
	}
	return f
}
