// Package plugin is the backend of the gpufleet Grafana datasource: it answers Grafana's QueryData
// (builder queries through the query package, raw SQL with macros), CheckHealth and CallResource
// (label and metric lists for editors and template variables) against ClickHouse or chDB.
package plugin

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	backendlog "github.com/grafana/grafana-plugin-sdk-go/backend/log"
	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	storebackend "github.com/gpufleet/gpufleet/internal/store/backend"
	"github.com/gpufleet/gpufleet/query"
)

// ID is the plugin id, in Grafana's org-name-type form.
const ID = "gpufleet-fleet-datasource"

// Settings are the datasource's jsonData; the password comes from secureJsonData.
type Settings struct {
	// Address is a ClickHouse server's native-protocol host:port.
	Address  string `json:"address"`
	Database string `json:"database"`
	Username string `json:"username"`
	// CHDBPath is a chDB data directory (tests, single-process development). A data directory must
	// never be opened by two processes; the backend refuses one that is in use.
	CHDBPath string `json:"chdbPath"`
	// TLS to the server's secure native port. The PEM material lives in secureJsonData: tlsCACert
	// (with TLSAuthWithCACert), tlsClientCert and tlsClientKey (with TLSAuth).
	TLS               bool `json:"secure"`
	TLSSkipVerify     bool `json:"tlsSkipVerify"`
	TLSAuth           bool `json:"tlsAuth"`
	TLSAuthWithCACert bool `json:"tlsAuthWithCACert"`
	// Limits of every query the datasource runs; zero takes store.DefaultLimits. The session is
	// read-only whatever they say.
	QueryTimeoutSeconds int    `json:"queryTimeoutSeconds"`
	MaxResultRows       uint64 `json:"maxResultRows"`
	MaxResultBytes      uint64 `json:"maxResultBytes"`
	MaxMemoryBytes      uint64 `json:"maxMemoryBytes"`
	MaxRowsToRead       uint64 `json:"maxRowsToRead"`
	// StaleAfterSeconds: the health check warns when the newest sample is older; 0 means 300.
	StaleAfterSeconds int `json:"staleAfterSeconds"`
	// LibCHDBPath is libchdb.so for a chDB directory, when the environment's GPUFLEET_LIBCHDB
	// does not reach the plugin (Grafana ≥ 12.4 forwards only the variables listed in
	// forward_host_env_vars).
	LibCHDBPath string `json:"libchdbPath"`
}

// Limits are the settings' query limits.
func (s Settings) Limits() (store.Limits, error) {
	if s.QueryTimeoutSeconds < 0 {
		return store.Limits{}, fmt.Errorf("settings: queryTimeoutSeconds %d: must not be negative", s.QueryTimeoutSeconds)
	}
	return store.Limits{
		MaxExecutionTime: time.Duration(s.QueryTimeoutSeconds) * time.Second,
		MaxResultRows:    s.MaxResultRows,
		MaxResultBytes:   s.MaxResultBytes,
		MaxMemoryUsage:   s.MaxMemoryBytes,
		MaxRowsToRead:    s.MaxRowsToRead,
	}.WithDefaults(), nil
}

// TLSConfig is the client TLS configuration the settings ask for, or nil for plain TCP. Any TLS
// switch turns TLS on; a PEM block that does not parse is named.
func (s Settings) TLSConfig(secure map[string]string) (*tls.Config, error) {
	if !s.TLS && !s.TLSSkipVerify && !s.TLSAuth && !s.TLSAuthWithCACert {
		return nil, nil
	}
	if s.CHDBPath != "" {
		return nil, errors.New("settings: TLS applies to a ClickHouse address, not to a chDB directory")
	}
	host, _, err := net.SplitHostPort(s.Address)
	if err != nil {
		host = s.Address
	}
	c := &tls.Config{ServerName: host, InsecureSkipVerify: s.TLSSkipVerify, MinVersion: tls.VersionTLS12}
	if s.TLSAuthWithCACert {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(secure["tlsCACert"])) {
			return nil, errors.New("settings: tlsCACert: no PEM certificate found (paste the CA certificate, BEGIN CERTIFICATE … END CERTIFICATE)")
		}
		c.RootCAs = pool
	}
	if s.TLSAuth {
		pair, err := tls.X509KeyPair([]byte(secure["tlsClientCert"]), []byte(secure["tlsClientKey"]))
		if err != nil {
			return nil, fmt.Errorf("settings: tlsClientCert/tlsClientKey: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// DSN is the store address the settings describe.
func (s Settings) DSN(password string) (string, error) {
	db := s.Database
	if db == "" {
		db = "gpufleet"
	}
	if err := store.CheckIdent("database", db); err != nil {
		return "", err
	}
	switch {
	case s.CHDBPath != "" && s.Address != "":
		return "", errors.New("settings: give either a ClickHouse address or a chDB directory, not both")
	case s.CHDBPath != "":
		return "chdb://" + s.CHDBPath + "?database=" + db, nil
	case s.Address != "":
		u := url.URL{Scheme: "clickhouse", Host: s.Address, Path: "/" + db}
		if s.Username != "" {
			u.User = url.UserPassword(s.Username, password)
		}
		return u.String(), nil
	}
	return "", errors.New("settings: set the ClickHouse address (host:9000) or a chDB directory")
}

// Datasource is one configured datasource instance.
type Datasource struct {
	now func() time.Time
	// open connects; until it succeeds every call tries again, so that a schema migrated or a
	// server started after Grafana needs no settings change.
	open     func(context.Context) (store.Store, error)
	staleFor time.Duration
	mu       sync.Mutex
	st       store.Store // set once, under mu
}

var (
	_ backend.QueryDataHandler      = (*Datasource)(nil)
	_ backend.CheckHealthHandler    = (*Datasource)(nil)
	_ backend.CallResourceHandler   = (*Datasource)(nil)
	_ instancemgmt.InstanceDisposer = (*Datasource)(nil)
)

// NewDatasource is the instance factory Grafana calls when a datasource is created or its settings
// change. It fails only on settings that cannot work; a server that is down or a database without
// the schema is reported by the health check and by each query.
func NewDatasource(ctx context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	var cfg Settings
	if len(s.JSONData) > 0 {
		if err := json.Unmarshal(s.JSONData, &cfg); err != nil {
			return nil, fmt.Errorf("settings: %w", err)
		}
	}
	dsn, err := cfg.DSN(s.DecryptedSecureJSONData["password"])
	if err != nil {
		return nil, err
	}
	if _, err := storebackend.Parse(dsn); err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	tlsConfig, err := cfg.TLSConfig(s.DecryptedSecureJSONData)
	if err != nil {
		return nil, err
	}
	lim, err := cfg.Limits()
	if err != nil {
		return nil, err
	}
	if cfg.StaleAfterSeconds < 0 {
		return nil, fmt.Errorf("settings: staleAfterSeconds %d: must not be negative", cfg.StaleAfterSeconds)
	}
	lib := cmp.Or(cfg.LibCHDBPath, os.Getenv("GPUFLEET_LIBCHDB"))
	d := &Datasource{now: time.Now, staleFor: cmp.Or(time.Duration(cfg.StaleAfterSeconds)*time.Second, 5*time.Minute)}
	d.open = func(ctx context.Context) (store.Store, error) {
		st, err := storebackend.OpenReader(ctx, dsn, storebackend.Options{LibCHDB: lib, TLS: tlsConfig}, lim)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", storebackend.Redact(dsn), err)
		}
		return st, nil
	}
	if _, err := d.store(ctx); err != nil {
		backendlog.DefaultLogger.Warn("gpufleet datasource not connected yet", "error", err.Error())
	}
	return d, nil
}

// New wraps an open store.
func New(st store.Store, now func() time.Time) *Datasource {
	return &Datasource{st: st, now: now, staleFor: 5 * time.Minute}
}

// store returns the open store, connecting if it is not yet.
func (d *Datasource) store(ctx context.Context) (store.Store, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st != nil {
		return d.st, nil
	}
	if d.open == nil {
		return nil, errors.New("datasource is closed")
	}
	st, err := d.open(ctx)
	if err != nil {
		return nil, err
	}
	d.st = st
	return st, nil
}

// Dispose closes the store when Grafana drops the instance.
func (d *Datasource) Dispose() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.st != nil {
		_ = d.st.Close()
	}
	d.st, d.open = nil, nil
}

// CheckHealth connects, checks the schema version and the newest data, and says what to do when
// something is off, naming the datasource's settings.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	fail := func(format string, args ...any) (*backend.CheckHealthResult, error) {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: fmt.Sprintf(format, args...)}, nil
	}
	st, err := d.store(ctx)
	switch {
	case errors.Is(err, store.ErrNoSchema):
		return fail("no gpufleet schema: %v. Run `gpufleet migrate` against this ClickHouse, or check the Database and chDB directory settings", err)
	case err != nil:
		return fail("cannot connect to ClickHouse: %v. Check the Address, Username, Password and TLS settings", err)
	}
	if _, err := st.Query(ctx, "SELECT 1"); err != nil {
		return fail("cannot query ClickHouse: %v. Check the Address, Username, Password and TLS settings", err)
	}
	applied, err := migrate.Applied(ctx, st)
	if err != nil {
		return fail("no gpufleet schema in database %s (%v): run `gpufleet migrate` against it, or check the Database setting", st.Database(), err)
	}
	have := 0
	for v := range applied {
		have = max(have, v)
	}
	switch want := migrate.Latest(); {
	case have == 0:
		return fail("database %s has no gpufleet schema: run `gpufleet migrate` against it, or check the Database setting", st.Database())
	case have < want:
		return fail("database %s is at schema version %d, this plugin needs %d: run `gpufleet migrate`", st.Database(), have, want)
	}
	r, err := st.Query(ctx, "SELECT count(), max(t) FROM "+store.Table(st.Database(), schema.GPU1m)+" WHERE t >= now() - INTERVAL 1 DAY")
	if err != nil || len(r.Rows) != 1 || len(r.Rows[0]) != 2 {
		return fail("schema present but unreadable: %v", err)
	}
	msg := fmt.Sprintf("OK: database %s, schema version %d", st.Database(), have)
	newest, _ := r.Rows[0][1].(string)
	t, perr := time.ParseInLocation(time.DateTime, newest, time.UTC)
	switch age := d.now().Sub(t); {
	case r.Rows[0][0] == uint64(0) || perr != nil:
		msg += fmt.Sprintf("; WARNING: no samples in the last day: are agents and ingest running? (stale after %s)", d.staleFor)
	case age > d.staleFor+time.Minute: // gpu_1m's newest minute starts up to a minute before its last sample
		msg += fmt.Sprintf("; WARNING: the newest sample is %s old (stale after %s): is ingest running?", age.Truncate(time.Second), d.staleFor)
	default:
		msg += fmt.Sprintf(", newest sample minute %s UTC", newest)
	}
	return &backend.CheckHealthResult{Status: backend.HealthStatusOk, Message: msg}, nil
}

// Query is the JSON of one panel query.
type Query struct {
	QueryType string `json:"queryType"` // "series" (default), "stat", "top", "sql", "annotations", "health", "drain", "interruptions", "power" (power.go) or "jobs" (jobs.go)
	Metric    string `json:"metric"`
	Agg       string `json:"agg"`
	// Reason is the clock-event reason an agg "share" of throttle_reasons asks about (sw_thermal, …).
	Reason    string   `json:"reason"`
	GroupBy   []string `json:"groupBy"`
	RawFilter []struct {
		Dim    string   `json:"dim"`
		Values []string `json:"values"`
	} `json:"filters"`
	Fill   bool   `json:"fill"`
	Order  string `json:"order"` // top: "desc" (default) or "asc"
	Limit  int    `json:"limit"` // top: how many GPUs
	RawSQL string `json:"rawSql"`
	// Format of a raw SQL result: "table" (default) or "time_series" (a long result made wide,
	// one series per label set).
	Format string `json:"format"`
	// Alias is a series' display name, {{label}} standing for its labels (see applyAlias).
	Alias string `json:"alias"`
	// Kinds are the gpu_events kinds an annotations query shows; none means all.
	Kinds []string `json:"kinds"`
	// Health, drain and interruptions (failures.go): the look-back and silence threshold as Go
	// durations ("168h", "2m"; empty for the defaults), and how soon after a fatal event a job
	// must have ended to count as interrupted, in seconds (0 for 300). Limit caps the drain list.
	Lookback string `json:"lookback"`
	Silent   string `json:"silent"`
	Within   int    `json:"within"`
}

// QueryData answers each query on its own; one failing query does not fail the others.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	resp := backend.NewQueryDataResponse()
	if _, err := d.store(ctx); err != nil {
		for _, q := range req.Queries {
			resp.Responses[q.RefID] = backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
		}
		return resp, nil
	}
	for _, q := range req.Queries {
		resp.Responses[q.RefID] = d.query(ctx, q)
	}
	return resp, nil
}

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) backend.DataResponse {
	var q Query
	if err := json.Unmarshal(dq.JSON, &q); err != nil {
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, "query JSON: "+err.Error())
	}
	from, to := dq.TimeRange.From.UTC(), dq.TimeRange.To.UTC()
	var (
		frames []*data.Frame
		err    error
	)
	switch q.QueryType {
	case "", "series", "stat":
		frames, err = d.series(ctx, q, from, to, stepFor(from, to, dq.Interval, dq.MaxDataPoints))
	case "top":
		frames, err = d.top(ctx, q, from, to)
	case "sql":
		frames, err = d.sql(ctx, q, from, to, stepFor(from, to, dq.Interval, dq.MaxDataPoints))
	case "annotations":
		frames, err = d.annotations(ctx, q, from, to)
	case "health", "drain", "interruptions":
		frames, err = d.failures(ctx, q, from, to)
	case "power":
		frames, err = d.power(ctx, q, from, to, stepFor(from, to, dq.Interval, dq.MaxDataPoints))
	case "jobs":
		frames, err = d.jobs(ctx, q, from, to)
	default:
		err = badType(q.QueryType)
	}
	if err != nil {
		if errors.Is(err, query.ErrInvalid) {
			return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourceDownstream, err.Error())
		}
		return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
	}
	var r backend.DataResponse
	for _, f := range frames {
		f.RefID = dq.RefID
		r.Frames = append(r.Frames, f)
	}
	return r
}

func badType(t string) error {
	return fmt.Errorf("%w: queryType %q: series, stat, top, sql, annotations, health, drain, interruptions, power or jobs", query.ErrInvalid, t)
}

// Compiled is what a panel query will run: the SQL with {name:Type} placeholders, the values bound
// to them, and the table it reads. The query editor shows it under the builder.
type Compiled struct {
	SQL    string       `json:"sql"`
	Params store.Params `json:"params"`
	Table  string       `json:"table,omitempty"`
}

// compile is QueryData without the run: the same window, step and validation.
func (d *Datasource) compile(ctx context.Context, q Query, from, to time.Time, interval time.Duration, maxPoints int64) (*Compiled, error) {
	step := stepFor(from, to, interval, maxPoints)
	switch q.QueryType {
	case "", "series", "stat":
		qq, err := builder(q, from, to, step)
		if err != nil {
			return nil, err
		}
		c, err := qq.Compile(d.st.Database())
		if err != nil {
			return nil, err
		}
		return &Compiled{SQL: c.SQL, Params: c.Params, Table: c.Table}, nil
	case "top":
		agg, k, err := topArgs(q)
		if err != nil {
			return nil, err
		}
		filters, err := q.filters()
		if err != nil {
			return nil, err
		}
		sql, p, err := query.TopGPUsSQL(d.st.Database(), q.Metric, agg, q.Order == "asc", k, filters...)
		if err != nil {
			return nil, err
		}
		maps.Copy(p, query.MinuteWindow(from, to))
		return &Compiled{SQL: sql, Params: p, Table: query.TopGPUsTable(agg)}, nil
	case "sql":
		// What runs is the engine's canonical text of the statement, after the same check.
		sql, p, err := query.PrepareSQL(ctx, d.st, q.RawSQL, query.Window{From: from, To: to, Interval: step})
		if err != nil {
			return nil, err
		}
		return &Compiled{SQL: sql, Params: p}, nil
	case "annotations":
		sql, p, err := eventsSQL(d.st.Database(), q, from, to)
		if err != nil {
			return nil, err
		}
		return &Compiled{SQL: sql, Params: p, Table: schema.GPUEvents}, nil
	case "health", "drain", "interruptions":
		sql, p, err := d.failureSQL(q, from, to)
		if err != nil {
			return nil, err
		}
		return &Compiled{SQL: sql, Params: p}, nil
	case "power":
		return d.powerCompiled(q, from, to, step)
	case "jobs":
		return d.jobsCompiled(q, from, to)
	}
	return nil, badType(q.QueryType)
}

// stepFor picks the bucket width: the panel's interval, widened so that the range fits in
// maxDataPoints, in whole seconds, and in whole minutes from a minute up so rollups can answer.
func stepFor(from, to time.Time, interval time.Duration, maxPoints int64) time.Duration {
	step := max(interval, time.Second)
	if maxPoints > 0 {
		step = max(step, to.Sub(from)/time.Duration(maxPoints))
	}
	unit := time.Second
	if step >= time.Minute {
		unit = time.Minute
	}
	if r := step % unit; r != 0 {
		step += unit - r
	}
	return step
}

// builder turns a series or stat panel query into a query.Query over [from, to) at step.
func builder(q Query, from, to time.Time, step time.Duration) (*query.Query, error) {
	groups, err := query.ParseDims(q.GroupBy)
	if err != nil {
		return nil, fmt.Errorf("%w: groupBy: %v", query.ErrInvalid, err)
	}
	qq := &query.Query{Metric: q.Metric, Agg: query.Agg(strings.ToLower(q.Agg)), GroupBy: groups, Step: step, Fill: q.Fill, Reason: q.Reason}
	if q.QueryType == "stat" {
		// Whole minutes, so that a stat or an alert over "the last hour" reads the minute rollups.
		qq.Whole, qq.Fill = true, false
		qq.From, qq.To = query.SnapWindow(from, to, time.Minute)
	} else {
		qq.From, qq.To = query.SnapWindow(from, to, step)
	}
	if qq.Agg == "" {
		qq.Agg = query.Avg
	}
	if qq.Filters, err = q.filters(); err != nil {
		return nil, err
	}
	return qq, nil
}

// filters maps the panel's filters to the query layer's, by the names users type.
func (q Query) filters() ([]query.Filter, error) {
	var out []query.Filter
	for _, f := range q.RawFilter {
		dim, ok := query.DimByName(f.Dim)
		if !ok {
			return nil, fmt.Errorf("%w: filters: %q is not one of %s", query.ErrInvalid, f.Dim, query.DimNames)
		}
		out = append(out, query.Filter{Dim: dim, Values: f.Values})
	}
	return out, nil
}

func (d *Datasource) series(ctx context.Context, q Query, from, to time.Time, step time.Duration) ([]*data.Frame, error) {
	empty := q.matchesNothing()
	qq, err := builder(q.withoutEmptyFilters(), from, to, step)
	if err != nil {
		return nil, err
	}
	var series []query.Series
	if empty {
		// Not run, but still checked: a mistake beside the empty filter is not hidden as no data.
		if _, err := qq.Compile(d.st.Database()); err != nil {
			return nil, err
		}
	} else if series, err = query.Run(ctx, d.st, qq); err != nil {
		return nil, err
	}
	f := wideFrame(q.Metric, series)
	if qq.Whole {
		f = numericFrame(q.Metric, series)
	}
	return []*data.Frame{applyAlias(setUnit(f, unit(q.Metric, qq.Agg)), q.Alias, q.Metric)}, nil
}

// matchesNothing: a filter with no values keeps no row. That is what a filter on a template
// variable with no options becomes; the panel shows no data rather than the query layer's
// refusal of an empty IN.
func (q Query) matchesNothing() bool {
	for _, f := range q.RawFilter {
		if len(f.Values) == 0 {
			return true
		}
	}
	return false
}

// withoutEmptyFilters is q less its filters with no values.
func (q Query) withoutEmptyFilters() Query {
	kept := q.RawFilter[:0:0]
	for _, f := range q.RawFilter {
		if len(f.Values) > 0 {
			kept = append(kept, f)
		}
	}
	q.RawFilter = kept
	return q
}

// topArgs applies the top-K defaults and checks the order.
func topArgs(q Query) (agg string, k int, err error) {
	agg, k = q.Agg, q.Limit
	if agg == "" {
		agg = "avg"
	}
	if k == 0 {
		k = 10
	}
	if q.Order != "" && q.Order != "asc" && q.Order != "desc" {
		return "", 0, fmt.Errorf("%w: order: %q: asc or desc", query.ErrInvalid, q.Order)
	}
	return agg, k, nil
}

func (d *Datasource) top(ctx context.Context, q Query, from, to time.Time) ([]*data.Frame, error) {
	agg, k, err := topArgs(q)
	if err != nil {
		return nil, err
	}
	empty := q.matchesNothing()
	filters, err := q.withoutEmptyFilters().filters()
	if err != nil {
		return nil, err
	}
	var rows []query.GPURank
	if empty {
		if _, _, err := query.TopGPUsSQL(d.st.Database(), q.Metric, agg, q.Order == "asc", k, filters...); err != nil {
			return nil, err
		}
	} else if rows, err = query.TopGPUs(ctx, d.st, q.Metric, agg, q.Order == "asc", k, from, to, filters...); err != nil {
		return nil, err
	}
	return []*data.Frame{setUnit(topFrame(q.Metric, rows), unit(q.Metric, query.Agg(agg)))}, nil
}

func (d *Datasource) sql(ctx context.Context, q Query, from, to time.Time, step time.Duration) ([]*data.Frame, error) {
	if q.Format != "" && q.Format != "table" && q.Format != "time_series" {
		return nil, fmt.Errorf("%w: format %q: table or time_series", query.ErrInvalid, q.Format)
	}
	r, err := query.RunSQL(ctx, d.st, q.RawSQL, query.Window{From: from, To: to, Interval: step})
	if err != nil {
		return nil, err
	}
	f := resultFrame(r)
	if q.Format == "time_series" {
		if f, err = timeSeriesFrames(f); err != nil {
			return nil, fmt.Errorf("%w: format time_series: %v", query.ErrInvalid, err)
		}
	}
	return []*data.Frame{f}, nil
}
