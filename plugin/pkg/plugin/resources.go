package plugin

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/resource/httpadapter"

	"github.com/gpufleet/gpufleet/gpumetric"
	"github.com/gpufleet/gpufleet/query"
	"github.com/gpufleet/gpufleet/store"
)

// CallResource serves the lists editors and template variables need:
//
//	GET metrics              every metric: column, kind, unit, help, aggregations that apply
//	GET labels?dim=node      distinct values of a label seen in the last 7 days (cluster, node,
//	                         gpu, model, job), optionally narrowed by cluster=…
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
		if m.Kind == gpumetric.Counter {
			mi.Kind, mi.Aggs = "counter", []string{"increase", "rate"}
		}
		out = append(out, mi)
	}
	writeJSON(w, http.StatusOK, out)
}

func (d *Datasource) labels(w http.ResponseWriter, r *http.Request) {
	dim, ok := query.DimByName(r.URL.Query().Get("dim"))
	if !ok {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "dim: one of " + query.DimNames})
		return
	}
	sql := "SELECT DISTINCT " + string(dim) + " AS v FROM " + store.Table(d.st.Database(), "gpu_1h") +
		" WHERE t >= toDateTime({since:Int64}, 'UTC') AND v != ''"
	p := store.Params{"since": strconv.FormatInt(d.now().Add(-7*24*time.Hour).Unix(), 10)}
	if c := r.URL.Query().Get("cluster"); c != "" {
		sql += " AND cluster = {cluster:String}"
		p["cluster"] = store.StringParam(c)
	}
	res, err := d.st.QueryWith(r.Context(), sql+" ORDER BY v LIMIT 10000", p)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	out := []string{}
	for _, row := range res.Rows {
		if s, ok := row[0].(string); ok {
			out = append(out, s)
		}
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
