package main

// `gpufleet healthcheck URL`: a container's probe where the image has no shell, curl or wget
// (docker-compose.yml's healthchecks run it against the daemon's own /healthz or /readyz).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// healthcheckTimeout is under compose's probe timeout (5s), so that a hung daemon is reported
// by this command, with its reason, rather than by the probe's kill.
const healthcheckTimeout = 4 * time.Second

func runHealthcheck(ctx context.Context, e *env, args []string) error {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h" || args[0] == "-help") {
		fmt.Fprint(e.stdout, "Usage: gpufleet healthcheck URL\n\nGETs URL (a daemon's /healthz or /readyz, e.g. http://127.0.0.1:9401/readyz) and exits 0\n"+
			"when it answers 2xx, 1 otherwise, saying why on one line: an HTTP probe of a gpufleet daemon for\n"+
			"container healthchecks in images without curl. It does not look at GPUs: for the node's GPU\n"+
			"health (Slurm, node-problem-detector) run `gpufleet health-check`.\n")
		return nil
	}
	if len(args) != 1 {
		return usageError{fmt.Errorf("want one URL, e.g. http://127.0.0.1:9401/healthz")}
	}
	u, err := url.Parse(args[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("%q: want an http:// or https:// URL", args[0])}
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u.Redacted(), err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err // *url.Error: `Get "URL": dial tcp …: connection refused`
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("GET %s: %s: %s", u.Redacted(), resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(e.stdout, string(body))
	return nil
}
