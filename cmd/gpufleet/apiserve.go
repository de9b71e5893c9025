//go:build !agentonly

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gpufleet/gpufleet/query/fleetpage"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

// apiAuthFlags are the API's bearer-token settings.
type apiAuthFlags struct {
	token, tokenFile string
}

func (a *apiAuthFlags) register(f *flags) {
	f.StringVar(&a.token, "api-token", "", "bearer token every request except /healthz must carry (Authorization: Bearer <token>),\n"+
		"/metrics included; prefer --api-token-file or the environment, which stay out of ps")
	f.StringVar(&a.tokenFile, "api-token-file", "", "file holding the bearer token (surrounding whitespace ignored), e.g. a mounted secret")
}

// resolve returns the token, read from --api-token-file when that is set; empty asks for none.
func (a *apiAuthFlags) resolve() (string, error) {
	tok := a.token
	if a.tokenFile != "" {
		if a.token != "" {
			return "", usageError{errors.New("--api-token and --api-token-file: give one, not both")}
		}
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return "", usageError{fmt.Errorf("--api-token-file: %w", err)}
		}
		tok = strings.TrimSpace(string(b))
		if tok == "" {
			return "", usageError{fmt.Errorf("--api-token-file %s: the file is empty", a.tokenFile)}
		}
	}
	for _, c := range tok {
		// RFC 6750's token characters, roughly: anything a header carries without quoting.
		if c <= ' ' || c > '~' {
			name := "--api-token"
			if a.tokenFile != "" {
				name = "--api-token-file " + a.tokenFile
			}
			return "", usageError{fmt.Errorf("%s: the token must be printable ASCII without spaces", name)}
		}
	}
	return tok, nil
}

// serveAPI serves the query API (/api/v1/), the fleet-health page (/), /metrics and /healthz on addr until ctx ends, behind
// the access log and, when token is set, the bearer token (/healthz excepted). The listener is
// opened before returning so that a taken port is reported at start-up.
func serveAPI(ctx context.Context, flag, addr string, reg *prometheus.Registry, log *slog.Logger, api http.Handler, token string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/api/v1/", api)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.Handle("/", fleetpage.Handler())
	// The page's files carry no fleet data; the page sends the token with each API call.
	public := append([]string{"/healthz"}, fleetpage.Paths...)
	h := httpapi.Middleware(mux, httpapi.ServeOptions{Token: token, Public: public, Logger: log})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	if token == "" && !loopback(ln.Addr()) {
		log.Warn("the API and /metrics are open to every host that reaches "+ln.Addr().String()+" without a token: set --api-token-file, or bind 127.0.0.1",
			slog.String(strings.TrimPrefix(flag, "--"), addr))
	}
	return ln.Addr(), nil
}

func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}
