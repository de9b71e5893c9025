package plugin

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// CallResource serves the lists editors and template variables need:
//
//	GET metrics              every metric: column, kind, unit, help, aggregations that apply
//	GET labels?dim=node      distinct values of a label seen in the last 7 days (cluster, node,
//	                         gpu, model, job), optionally narrowed by cluster=… (repeatable);
//	                         → {values, truncated}: the first 10,000, and whether there were more
//	POST compile             the SQL a panel query will run: the query's JSON plus from and to
//	                         (epoch ms), intervalMs and maxDataPoints; → {sql, params, table}
func (d *Datasource) CallResource(ctx context.Context, req *backend.CallResourceRequest, sender backend.CallResourceResponseSender) error {
	if req.Path != "metrics" {
		if _, err := d.store(ctx); err != nil {
			body, _ := json.Marshal(map[string]string{"error": err.Error()})
			return sender.Send(&backend.CallResourceResponse{Status: http.StatusBadGateway,
				Headers: map[string][]string{"Content-Type": {"application/json"}}, Body: body})
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", d.metrics)
	mux.HandleFunc("GET /labels", d.labels)
	mux.HandleFunc("POST /compile", d.compileResource)
	return httpadapter.New(mux).CallResource(ctx, req, sender)
}

// MetricInfo describes one metric for the query editor.
type MetricInfo struct {
	Column string   `json:"column"`
	Kind   string   `json:"kind"`
	Unit   string   `json:"unit"`
	Help   string   `json:"help"`
	Aggs   []string `json:"aggs"`
}

func (d *Datasource) metrics(w http.ResponseWriter, _ *http.Request) {
	var out []MetricInfo
	for _, m := range gpumetric.All() {
		mi := MetricInfo{Column: m.Column, Kind: "gauge", Unit: m.Unit, Help: m.Help,
			Aggs: []string{"avg", "min", "max", "sum", "count", "p50", "p90", "p95", "p99", "last"}}
		switch m.Kind {
		case gpumetric.Counter:
			mi.Kind, mi.Aggs = "counter", []string{"increase", "rate"}
		case gpumetric.Bitmask:
			mi.Kind, mi.Aggs = "bitmask", []string{"last", "count"}
		}
		out = append(out, mi)
	}
	writeJSON(w, http.StatusOK, out)
}

// labelsMax is how many values the labels resource answers; it says when there were more.
const labelsMax = 10000

// Labels is the labels resource's answer: at most labelsMax values, in order, and whether the
// dimension had more (one more is fetched to know).
type Labels struct {
	Values    []string `json:"values"`
	Truncated bool     `json:"truncated"`
}

func (d *Datasource) labels(w http.ResponseWriter, r *http.Request) {
	dim, ok := query.DimByName(r.URL.Query().Get("dim"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "dim: one of " + query.DimNames})
		return
	}
	sql := "SELECT DISTINCT " + string(dim) + " AS v FROM " + store.Table(d.st.Database(), schema.GPU1h) +
		" WHERE t >= toDateTime({since:Int64}, 'UTC') AND v != ''"
	p := store.Params{"since": strconv.FormatInt(d.now().Add(-7*24*time.Hour).Unix(), 10)}
	// cluster may repeat: a template variable's query in a multi-value cluster.
	if cs := slices.DeleteFunc(r.URL.Query()["cluster"], func(c string) bool { return c == "" }); len(cs) > 0 {
		sql += " AND cluster IN {clusters:Array(String)}"
		p["clusters"] = store.FormatArray(cs)
	}
	res, err := d.st.QueryWith(r.Context(), sql+" ORDER BY v LIMIT "+strconv.Itoa(labelsMax+1), p)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	out := Labels{Values: []string{}}
	for _, row := range res.Rows {
		if s, ok := row[0].(string); ok {
			out.Values = append(out.Values, s)
		}
	}
	if len(out.Values) > labelsMax {
		out.Values, out.Truncated = out.Values[:labelsMax], true
	}
	writeJSON(w, http.StatusOK, out)
}

// compileRequest is a panel query as the editor holds it, with the dashboard's window.
type compileRequest struct {
	Query
	From          int64 `json:"from"`
	To            int64 `json:"to"`
	IntervalMs    int64 `json:"intervalMs"`
	MaxDataPoints int64 `json:"maxDataPoints"`
}

func (d *Datasource) compileResource(w http.ResponseWriter, r *http.Request) {
	var req compileRequest
	if r.Body == nil || r.Body == http.NoBody {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "compile request: the body must be the panel query's JSON"})
		return
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "compile request JSON: " + err.Error()})
		return
	}
	to := time.UnixMilli(req.To).UTC()
	if req.To == 0 {
		to = d.now().UTC()
	}
	from := time.UnixMilli(req.From).UTC()
	if req.From == 0 {
		from = to.Add(-time.Hour)
	}
	c, err := d.compile(r.Context(), req.Query, from, to, time.Duration(req.IntervalMs)*time.Millisecond, req.MaxDataPoints)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // SQL's < and > stay readable in the editor
	_ = enc.Encode(v)
}
