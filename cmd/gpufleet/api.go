//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gpufleet/gpufleet/query/httpapi"
)

func runAPI(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "api", "Serves the query layer as JSON over HTTP until SIGTERM, with /metrics:\n"+
		"  /api/v1/summary?since=15m\n"+
		"  /api/v1/series?metric=gpu_util&agg=p99&step=1m&since=24h&by=cluster&filter=model=NVIDIA%20H100%2080GB%20HBM3\n"+
		"  /api/v1/top?metric=temp_gpu_c&agg=max&order=desc&k=10&since=1h\n"+
		"  /api/v1/silent?lookback=1h&silent=2m\n"+
		"  /api/v1/stragglers?since=1h&ratio=0.5\n"+
		"  /api/v1/events?by=model&since=24h\n"+
		"  /api/v1/jobs?since=24h\n"+
		"Windows take since= or from=/to= (RFC 3339). A bad parameter is a 400 naming it.")
	var sf storeFlags
	var auth apiAuthFlags
	var addr string
	sf.register(f)
	sf.registerLimits(f)
	auth.register(f)
	f.StringVar(&addr, "http", "127.0.0.1:8081", "address to serve the API, /metrics and /healthz on: loopback only by default;\n"+
		"0.0.0.0:8081 (or :8081) serves other hosts, as in a container")
	if err := f.parse(args); err != nil {
		return err
	}
	token, err := auth.resolve()
	if err != nil {
		return err
	}
	if addr == "" {
		return usageError{fmt.Errorf("--http: an address is required")}
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	st, err := sf.openReader(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	bound, err := serveAPI(ctx, "--http", addr, newRegistry(), log, httpapi.Handler(st, time.Now), token)
	if err != nil {
		return err
	}
	log.Info("serving the query API", slog.String("addr", bound.String()), slog.String("page", "http://"+bound.String()+"/"), slog.Bool("token", token != ""), slog.String("clickhouse", redact(sf.dsn)))
	<-ctx.Done()
	return nil
}
