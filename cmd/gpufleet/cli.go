package main

// The subcommands' dispatch, flag parsing (every flag also settable as a GPUFLEET_* environment
// variable or a key of the --config file, config.go), logging and the /metrics, /healthz and
// /readyz server they share.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
}

// commands are the node commands and, unless built with -tags agentonly, the server ones.
func commands() []command {
	return append([]command{
		{"agent", "sample this node's GPUs and stream them to Kafka", runAgent},
		{"simulate", "stream a simulated fleet of GPUs to Kafka (load and demos)", runSimulate},
		{"topics", "create the pipeline's Kafka topics (an admin step, before agents and ingest)", runTopics},
		{"nvml-probe", "read this node's GPUs for a while and report NVML call latency and the metrics each GPU answers", runNVMLProbe},
		{"version", "print the version, commit and Go version this binary was built from", runVersion},
		{"health-check", "judge this node's GPUs through NVML: exit 0 OK, 1 WARN, 2 CRITICAL (Slurm, node-problem-detector)", runHealthCheckCmd},
		{"healthcheck", "HTTP probe: GET a gpufleet daemon's /healthz or /readyz, exit 0 on 2xx (for containers; GPUs: health-check)", runHealthcheck},
	}, serverCommands()...)
}

// env is what a subcommand gets from the process.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	environ        func() []string // for the unknown GPUFLEET_* check; nil skips it

	cur *flags // the command's flags once made, so that a usage error can say where a value came from

	// collect, when set, makes parse hand over the flag set and stop: how knownFlags learns every
	// command's flags without running one.
	collect func(cmd string, fs *flag.FlagSet)
}

// usageError is a bad command line; it exits 2 rather than 1.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// Run executes the command line args and returns the process exit code: 0 ok, 1 failed, 2 usage.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv, environ: os.Environ}
	if len(args) > 0 && args[0] == "--version" {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			args = []string{args[1], "--help"}
		} else {
			printUsage(stdout)
			return 0
		}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		var status exitStatus
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &status):
			return status.code // the command said why on stdout
		case errors.As(err, new(usageError)):
			msg := err.Error()
			if e.cur != nil {
				msg += e.cur.origins(msg)
			}
			fmt.Fprintf(stderr, "gpufleet %s: %s (see 'gpufleet %s --help')\n", c.name, msg, c.name)
			return 2
		default:
			fmt.Fprintf(stderr, "gpufleet %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "gpufleet: unknown command %q (commands: %s; see 'gpufleet help')\n", args[0], names())
	return 2
}

func names() string {
	var n []string
	for _, c := range commands() {
		n = append(n, c.name)
	}
	return strings.Join(n, ", ")
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `gpufleet: GPU-fleet telemetry. Agents sample NVIDIA GPUs and stream to Kafka; ingest
batches the stream into ClickHouse; query and Grafana read fleet-wide trends.

Usage: gpufleet <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every flag can also be set by environment (--interval is GPUFLEET_INTERVAL) or in a YAML file
given by --config (interval: 5s); a flag beats its variable, which beats the file. --print-config
shows each setting and where it came from. Run 'gpufleet <command> --help' for a command's flags.`)
	if len(serverCommands()) == 0 {
		fmt.Fprint(w, ` This is the agent-only build; the full gpufleet
binary also has ingest, migrate, query, api and demo.
`)
	} else {
		fmt.Fprint(w, " Quick start: gpufleet demo --for 15s\n")
	}
}

// flags is a command's flag set with GPUFLEET_* environment and --config file fallback.
type flags struct {
	*flag.FlagSet
	e           *env
	name        string // the command's
	usage       func() // the --help text; not fs.Usage, which flag.Parse also calls on every bad flag
	logLevel    string
	logJSON     bool
	configPath  string
	printConfig bool
	given       map[string]bool   // set on the command line, by the environment or by the file (parse)
	source      map[string]string // where each given flag's value came from: flag, env VAR, file PATH:LINE
}

func newFlags(e *env, name, synopsis string) *flags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := &flags{FlagSet: fs, e: e, name: name}
	e.cur = f
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&f.logJSON, "log-json", false, "log JSON lines instead of text")
	fs.StringVar(&f.configPath, "config", "", "YAML file of settings, keys named as the flags (batch-rows: 100000), optionally in a\n"+
		"section per command (ingest:); a flag or its variable beats the file (docs/config.md)")
	fs.BoolVar(&f.printConfig, "print-config", false, "print every setting with its value and where it came from (flag, env, file, default),\n"+
		"secrets redacted, and exit")
	fs.Usage = func() {}
	f.usage = func() {
		out := e.stdout
		fmt.Fprintf(out, "Usage: gpufleet %s [flags]\n\n%s\n\nFlags (each also settable as the environment variable shown):\n", name, synopsis)
		var lines []string
		fs.VisitAll(func(fl *flag.Flag) {
			def := ""
			if fl.DefValue != "" && fl.DefValue != "false" && fl.DefValue != "0" && fl.DefValue != "0s" {
				def = fmt.Sprintf(" (default %s)", fl.DefValue)
			}
			lines = append(lines, fmt.Sprintf("  --%s  [%s]\n      %s%s\n", fl.Name, envName(fl.Name), fl.Usage, def))
		})
		sort.Strings(lines)
		fmt.Fprint(out, strings.Join(lines, ""))
	}
	return f
}

func envName(flagName string) string {
	return "GPUFLEET_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads args, then fills every flag not given on the command line from its environment
// variable, then what is still unset from the --config file. Errors name the flag, the variable or
// the file's line. With --print-config it prints the result and returns errPrinted.
func (f *flags) parse(args []string) error {
	if f.e.collect != nil {
		f.e.collect(f.name, f.FlagSet)
		return errCollected
	}
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.usage()
			return err
		}
		return usageError{dashDash(err)}
	}
	if f.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", f.Arg(0))}
	}
	f.given, f.source = map[string]bool{}, map[string]string{}
	f.Visit(func(fl *flag.Flag) { f.given[fl.Name], f.source[fl.Name] = true, "flag" })
	var err error
	f.VisitAll(func(fl *flag.Flag) {
		if f.given[fl.Name] || err != nil {
			return
		}
		if v := f.e.getenv(envName(fl.Name)); v != "" {
			f.given[fl.Name], f.source[fl.Name] = true, "env "+envName(fl.Name)
			if serr := fl.Value.Set(v); serr != nil {
				shown := strconv.Quote(v)
				if secretFlag(fl.Name) {
					shown = "(redacted)"
				}
				err = usageError{fmt.Errorf("invalid value %s for %s (--%s): %v", shown, envName(fl.Name), fl.Name, serr)}
			}
		}
	})
	if err != nil {
		return err
	}
	f.warnUnknownEnv() // before the file, whose errors stop the command
	if err := f.loadConfig(); err != nil {
		return err
	}
	if f.printConfig {
		f.writeConfig(f.e.stdout)
		return errPrinted
	}
	return nil
}

// flagErr matches how package flag names a flag in its errors: with one dash.
var flagErr = regexp.MustCompile(`(not defined: |flag )-([A-Za-z0-9][A-Za-z0-9-]*)`)

// dashDash rewrites a parse error of package flag to name the flag as --help and the docs do
// ("flag provided but not defined: -metrc" → "unknown flag --metrc").
func dashDash(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s", name)
	}
	return errors.New(flagErr.ReplaceAllString(msg, "${1}--${2}"))
}

// isGiven reports whether the flag was set: on the command line, by its environment variable or in
// the --config file.
func (f *flags) isGiven(name string) bool { return f.given[name] }

func (f *flags) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", f.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if f.logJSON {
		return slog.New(slog.NewJSONHandler(f.e.stderr, opts)), nil
	}
	return slog.New(slog.NewTextHandler(f.e.stderr, opts)), nil
}

// newRegistry returns a Prometheus registry with the Go and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveHTTP serves /metrics, /healthz, /readyz (and extra handlers) on addr until ctx ends. An empty
// addr serves nothing. The listener is opened before returning so that a taken port is reported at
// start-up.
func serveHTTP(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger, extra map[string]http.Handler) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", daemonReady.serve)
	for p, h := range extra {
		mux.Handle(p, h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	log.Info("serving metrics", slog.String("addr", ln.Addr().String()))
	return nil
}

// daemonReady is what /readyz answers. It is the process's: a process runs one command.
var daemonReady readyState

// readyState is a daemon's readiness: not ready ("starting") until the command says how to tell.
type readyState struct {
	mu    sync.Mutex
	set   bool
	check func() error // nil: ready
}

// markReady makes /readyz answer 200 from now on: for a daemon whose start-up (what it must reach
// before doing its job) is over once it calls this: streamFleet and the NVML agent call it after
// agent.New.
func markReady() { setReadyCheck(nil) }

// setReadyCheck makes /readyz answer 503 with check's error while it returns one, 200 when it
// returns nil. check runs on every request: keep it to reading state the daemon keeps anyway.
func setReadyCheck(check func() error) {
	daemonReady.mu.Lock()
	defer daemonReady.mu.Unlock()
	daemonReady.set, daemonReady.check = true, check
}

func (r *readyState) err() error {
	r.mu.Lock()
	set, check := r.set, r.check
	r.mu.Unlock()
	switch {
	case !set:
		return errors.New("starting")
	case check == nil:
		return nil
	}
	return check()
}

func (r *readyState) serve(w http.ResponseWriter, _ *http.Request) {
	if err := r.err(); err != nil {
		http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// withDeadline returns ctx limited to d when d > 0 (the --for flag).
func withDeadline(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}
