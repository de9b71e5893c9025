package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

var binary string

// The CLI is tested as users run it: the built binary in a child process, so that exit codes,
// stdout/stderr and the one-chDB-per-process rule are all real.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gpufleet-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gpufleet")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build gpufleet: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testenv.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// cleanEnv drops GPUFLEET_* variables of the developer's shell so that defaults are tested.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GPUFLEET_") {
			env = append(env, kv)
		}
	}
	return env
}

func TestDemoSmoke(t *testing.T) {
	lib := testenv.LibCHDB(t)
	dir := t.TempDir()
	r := run(t, []string{"GPUFLEET_LIBCHDB=" + lib}, "demo", "--for", "4s", "--gpus", "16", "--interval", "500ms",
		"--data-dir", filepath.Join(dir, "data"), "--http", "127.0.0.1:0")
	if r.code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	m := regexp.MustCompile(`GPUs reporting\s+(\d+) on (\d+) nodes \((\d+) samples\)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", r.stdout)
	}
	if m[1] != "16" || m[2] != "2" {
		t.Errorf("summary reports %s GPUs on %s nodes, want 16 on 2", m[1], m[2])
	}
	// The last progress line is printed after ingest caught up: its two counts match the summary.
	p := regexp.MustCompile(`sampled (\d+)\s+ingested (\d+)`).FindAllStringSubmatch(r.stderr, -1)
	if len(p) < 2 {
		t.Fatalf("want progress lines, got stderr:\n%s", r.stderr)
	}
	last := p[len(p)-1]
	if last[1] != last[2] || last[2] != m[3] {
		t.Errorf("last progress %q vs summary samples %s: want sampled = ingested = summary", last[0], m[3])
	}
}

// Ingest refuses a schema that lacks migrations it writes for, rather than retrying inserts that
// cannot succeed; migrate --to leaves a schema part-way, and a second migrate completes it.
func TestIngestNeedsMigratedSchema(t *testing.T) {
	lib := testenv.LibCHDB(t)
	dsn := "chdb://" + t.TempDir()
	env := []string{"GPUFLEET_LIBCHDB=" + lib}
	if r := run(t, env, "ingest", "--clickhouse", dsn, "--brokers", "127.0.0.1:1"); r.code != 1 || !strings.Contains(r.stderr, "run gpufleet migrate first") {
		t.Errorf("ingest on an empty database: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, env, "migrate", "--clickhouse", dsn, "--to", "14"); r.code != 0 || !strings.Contains(r.stdout, "schema at version 14") {
		t.Fatalf("migrate --to 14: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	var pending []int
	for v := 15; v <= migrate.Latest(); v++ {
		pending = append(pending, v)
	}
	want := fmt.Sprint(pending)
	r := run(t, env, "ingest", "--clickhouse", dsn, "--brokers", "127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.stderr, "lacks migrations "+want) {
		t.Errorf("ingest on a schema at 14: exit %d, %s", r.code, r.stderr)
	}
	if r := run(t, env, "migrate", "--clickhouse", dsn); r.code != 0 || !strings.Contains(r.stdout, "applied now: "+want) {
		t.Errorf("migrate: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "migrate", "--to", "99"); r.code != 2 || !strings.Contains(r.stderr, "--to 99: must be 1..") {
		t.Errorf("migrate --to 99: exit %d, %s", r.code, r.stderr)
	}
}

// A series query on a fresh schema answers with just its header; the same store then answers CSV.
func TestQuerySeriesOnEmptyStore(t *testing.T) {
	lib := testenv.LibCHDB(t)
	dsn := "chdb://" + t.TempDir()
	env := []string{"GPUFLEET_LIBCHDB=" + lib}
	if r := run(t, env, "migrate", "--clickhouse", dsn, "--samples-days", "14"); r.code != 0 {
		t.Fatalf("migrate: exit %d: %s", r.code, r.stderr)
	}
	r := run(t, env, "query", "--clickhouse", dsn, "--metric", "gpu_util", "--agg", "p99", "--by", "cluster", "--format", "csv")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "t,cluster,value" {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	r = run(t, env, "query", "--clickhouse", dsn, "--sql", "SELECT count() AS n FROM gpufleet.gpu_samples WHERE $__timeFilter(time)")
	var sqlOut struct {
		Columns []string `json:"columns"`
		Rows    [][]any  `json:"rows"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sqlOut); r.code != 0 || err != nil ||
		fmt.Sprint(sqlOut.Columns, sqlOut.Rows) != "[n] [[0]]" {
		t.Errorf("--sql: exit %d, stdout %q (%v), stderr %s; want one row, n = 0", r.code, r.stdout, err, r.stderr)
	}
	for _, report := range []string{"hottest", "idle", "silent", "stragglers", "events", "jobs"} {
		r := run(t, env, "query", "--clickhouse", dsn, "--report", report, "--since", "1h")
		if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
			t.Errorf("--report %s: exit %d, stdout %q, stderr %s", report, r.code, r.stdout, r.stderr)
		}
	}
}

func TestBadInputExitsWithOneLine(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string // substring of stderr
	}{
		{"unknown command", nil, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown flag", nil, []string{"ingest", "--no-such-flag"}, 2, "unknown flag --no-such-flag"},
		// Before, a mistyped flag also printed the whole usage to stdout: `query --metrc x --format
		// csv > out.csv` filled out.csv with help.
		{"mistyped flag", nil, []string{"query", "--metrc", "x", "--format", "csv"}, 2, "gpufleet query: unknown flag --metrc"},
		{"bad flag value", nil, []string{"simulate", "--gpus", "many"}, 2, `invalid value "many" for flag --gpus`},
		{"speed without for", nil, []string{"simulate", "--speed", "5"}, 2, "--speed 5 needs --for"},
		{"speed too fast", nil, []string{"simulate", "--speed", "2000", "--for", "1s"}, 2, "--speed 2000 (Speed): must be 1..1000"},
		{"speed under a millisecond a tick", nil, []string{"simulate", "--speed", "50", "--interval", "10ms", "--for", "1s"}, 2, "--speed 50 (Speed): samples every 200µs"},
		{"speed too far back", nil, []string{"simulate", "--speed", "100", "--for", "240h"}, 2, "starts the simulated clock more than 696h0m0s back"},
		{"bad env value", []string{"GPUFLEET_BATCH_ROWS=lots"}, []string{"ingest"}, 2, "GPUFLEET_BATCH_ROWS (--batch-rows)"},
		{"zero workers", nil, []string{"ingest", "--workers", "0"}, 2, "--workers 0: must be between 1 and 256"},
		{"short session", []string{"GPUFLEET_SESSION_TIMEOUT=10ms"}, []string{"ingest"}, 2, "--session-timeout 10ms (SessionTimeout): must be at least 1s"},
		{"zero batch bytes", nil, []string{"ingest", "--batch-mib", "0"}, 2, "--batch-mib 0 (BatchBytes): must be at least 1 B"},
		// ingest.New used to take a negative value as the default; the CLI and the package now
		// agree, by ingest.Config.Validate.
		{"negative batch rows", nil, []string{"ingest", "--batch-rows", "-1"}, 2, "--batch-rows -1 (BatchRows): must be at least 1"},
		{"zero batch age", []string{"GPUFLEET_BATCH_AGE=0s"}, []string{"ingest"}, 2, "--batch-age 0s (BatchAge): must be positive"},
		{"zero dead-letter size", nil, []string{"ingest", "--dlq-max-mib", "0"}, 2, "--dlq-max-mib 0 (DLQMaxBytes): must be 1 B..1 GiB"},
		{"huge dead-letter size", []string{"GPUFLEET_DLQ_MAX_MIB=4096"}, []string{"ingest"}, 2, "--dlq-max-mib 4096 (DLQMaxBytes): must be 1 B..1 GiB"},
		{"zero clock ahead", nil, []string{"ingest", "--max-clock-ahead", "0s"}, 2, "--max-clock-ahead 0s (MaxClockAhead): must be at least 1s"},
		{"negative skew tolerance", nil, []string{"ingest", "--clock-skew-tolerance", "-5s"}, 2, "--clock-skew-tolerance -5s (ClockSkewTolerance): must be positive"},
		{"skew tolerance past the limit", []string{"GPUFLEET_CLOCK_SKEW_TOLERANCE=2h"}, []string{"ingest"}, 2,
			"--clock-skew-tolerance 2h0m0s (ClockSkewTolerance): must not exceed --max-clock-ahead 1h0m0s"},
		{"zero skew log interval", nil, []string{"ingest", "--skew-log-interval", "0s"}, 2, "--skew-log-interval 0s (SkewLogInterval): must be positive"},
		{"zero agent state", nil, []string{"ingest", "--agent-state-max", "0"}, 2, "--agent-state-max 0 (AgentStateMax): must be at least 1"},
		{"fold age too long", nil, []string{"ingest", "--fold", "--fold-age", "11m"}, 2, "--fold-age 11m0s (FoldAge): must be 1s..10m0s"},
		{"zero fold age", []string{"GPUFLEET_FOLD_AGE=0s"}, []string{"ingest"}, 2, "--fold-age 0s (FoldAge): must be 1s..10m0s"},
		{"zero fold rows", nil, []string{"ingest", "--fold-rows", "0"}, 2, "--fold-rows 0 (FoldRows): must be at least 1"},
		{"bad fold env", []string{"GPUFLEET_FOLD=maybe"}, []string{"ingest"}, 2, "GPUFLEET_FOLD (--fold)"},
		{"bad agent state env", []string{"GPUFLEET_AGENT_STATE_MAX=many"}, []string{"ingest"}, 2, "GPUFLEET_AGENT_STATE_MAX (--agent-state-max)"},
		{"short agent idle", nil, []string{"ingest", "--agent-state-idle", "10ms"}, 2, "--agent-state-idle 10ms (AgentStateIdle): must be at least 1s"},
		// Two modes, or a flag only another mode reads: before, the first mode silently won and the
		// other flag was ignored.
		{"sql and report", nil, []string{"query", "--sql", "SELECT 1", "--report", "hottest"}, 2, "--sql and --report: give one, not both"},
		{"metric and sql", []string{"GPUFLEET_SQL=SELECT 1"}, []string{"query", "--metric", "gpu_util"}, 2, "--metric and --sql: give one, not both"},
		{"metric and report", nil, []string{"query", "--metric", "gpu_util", "--report", "idle"}, 2, "--metric and --report: give one, not both"},
		{"agg with report", nil, []string{"query", "--report", "hottest", "--agg", "max"}, 2, "--agg and --report: --agg applies only to --metric"},
		{"format with sql", nil, []string{"query", "--sql", "SELECT 1", "--format", "csv"}, 2, "--format and --sql: --format applies only to the summary and --metric"},
		{"top with metric", nil, []string{"query", "--metric", "gpu_util", "--top", "3"}, 2, "--top and --metric: --top applies only to the summary and --report"},
		{"step with summary", nil, []string{"query", "--step", "5m"}, 2, "--step applies only to --metric, not the summary"},
		{"series unknown metric", nil, []string{"query", "--metric", "nope"}, 2, "metric: \"nope\" is not a gpu_samples metric"},
		{"series wrong agg", nil, []string{"query", "--metric", "energy_mj", "--agg", "avg"}, 2, "agg: \"avg\" does not apply to counter"},
		{"share unknown reason", nil, []string{"query", "--metric", "throttle_reasons", "--agg", "share", "--reason", "hot"}, 2, `reason: "hot" is not a clock-event reason`},
		{"reason with summary", nil, []string{"query", "--reason", "sw_thermal"}, 2, "--reason"},
		{"series bad group", nil, []string{"query", "--metric", "gpu_util", "--by", "datacenter"}, 2, `"datacenter" is not one of`},
		{"series bad filter", nil, []string{"query", "--metric", "gpu_util", "--filter", "node"}, 2, `want dim=v1|v2`},
		{"sql on no data", nil, []string{"query", "--sql", "SELECT 1", "--clickhouse", "chdb://" + t.TempDir() + "/typo"}, 1, "run `gpufleet migrate` on it first"},
		{"simulate interval too short", nil, []string{"simulate", "--interval", "5ms"}, 2, "--interval 5ms (Interval): must be at least 10ms"},
		{"agent send-every too large", nil, []string{"agent", "--source", "sim", "--send-every", "601", "--state-dir", t.TempDir()}, 2, "--send-every 601 (SendEvery): must be 1..600"},
		{"zero spool", nil, []string{"simulate", "--spool-dir", t.TempDir(), "--spool-mib", "0"}, 2, "--spool-mib 0: must be at least 1"},
		{"unknown report", nil, []string{"query", "--report", "vibes", "--clickhouse", "chdb://" + t.TempDir()}, 2, `--report "vibes": one of`},
		{"api without address", nil, []string{"api", "--http", ""}, 2, "--http: an address is required"},
		{"malformed DSN", nil, []string{"migrate", "--clickhouse", "mysql://x"}, 2, `unsupported scheme "mysql"`},
		{"DSN without host", nil, []string{"query", "--clickhouse", "clickhouse:///db"}, 2, "names no host"},
		{"shard database without cluster", nil, []string{"migrate", "--shard-database", "gpufleet_shard"}, 2, "--shard-database gpufleet_shard: needs --on-cluster"},
		{"bad shard database", nil, []string{"migrate", "--on-cluster", "fleet", "--shard-database", "s;DROP"}, 2, "--shard-database"},
		{"shards and clickhouse", nil, []string{"ingest", "--shards", "chdb:///tmp/a", "--clickhouse", "chdb:///tmp/b"}, 2, "--shards and --clickhouse: give one"},
		{"shards with migrate", nil, []string{"ingest", "--shards", "chdb:///tmp/a", "--migrate"}, 2, "--migrate with --shards"},
		{"shard twice", nil, []string{"ingest", "--shards", "chdb:///tmp/a chdb:///tmp/b chdb:///tmp/a"}, 2, "--shards: shard 3 is shard 1 again"},
		{"blank shards", []string{"GPUFLEET_SHARDS=  "}, []string{"ingest"}, 2, "--shards: no DSN"},
		// The first DSN lists a shard's two replicas; the second is not a DSN.
		{"malformed shard", nil, []string{"ingest", "--shards", "clickhouse://u:Sh4rdPw@a1:9000,a2:9000/s \n mysql://u:Sh4rdPw@h/db"}, 2,
			`--shards: shard 2: clickhouse DSN "mysql://u:xxxxx@h/db": unsupported scheme "mysql"`},
		{"bad database name", nil, []string{"migrate", "--clickhouse", "chdb:///tmp/x?database=a-b"}, 2, "letters, digits and underscore"},
		{"missing libchdb", []string{"GPUFLEET_LIBCHDB=/nonexistent/libchdb.so"}, []string{"migrate", "--clickhouse", "chdb://" + t.TempDir()}, 1, "deploy/dev/chdb.sh install"},
		{"unreachable broker", nil, []string{"simulate", "--brokers", "127.0.0.1:1", "--connect-timeout", "1s"}, 1, "cannot reach Kafka at 127.0.0.1:1"},
		{"bad broker", nil, []string{"agent", "--brokers", "no-port"}, 2, `broker "no-port" is not host:port`},
		// This machine has no NVIDIA driver: NVML is reported missing before any broker is tried.
		{"agent without NVML", nil, []string{"agent", "--source", "nvml", "--brokers", "127.0.0.1:1", "--connect-timeout", "1s"}, 1, "libnvidia-ml.so.1) was not found"},
		{"agent unknown source", nil, []string{"agent", "--source", "dcgm"}, 2, `--source "dcgm": use nvml or sim`},
		{"agent bad pod GPU resource", nil, []string{"agent", "--source", "sim", "--pod-gpu-resources", "nvidia.com/gpu,nvidia.com/*mig"}, 2, `--pod-gpu-resources: GPU resource "nvidia.com/*mig"`},
		{"agent no pod GPU resource", nil, []string{"agent", "--source", "sim", "--pod-gpu-resources", " , "}, 2, "--pod-gpu-resources: empty"},
		{"probe without NVML", nil, []string{"nvml-probe", "--for", "1s"}, 1, "libnvidia-ml.so.1) was not found"},
		{"probe interval too short", nil, []string{"nvml-probe", "--interval", "1ms"}, 2, "--interval 1ms: must be at least 10ms"},
		{"unreachable server", nil, []string{"query", "--clickhouse", "clickhouse://127.0.0.1:1/gpufleet"}, 1, "cannot reach ClickHouse"},
		{"config file missing", []string{"GPUFLEET_CONFIG=/nonexistent/gpufleet.yaml"}, []string{"ingest"}, 2, "--config: open /nonexistent/gpufleet.yaml"},
		{"healthcheck unreachable", nil, []string{"healthcheck", "http://127.0.0.1:1/healthz"}, 1, "connection refused"},
		{"healthcheck not a URL", nil, []string{"healthcheck", "127.0.0.1:9401"}, 2, "want an http:// or https:// URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, c.args...)
			if r.code != c.code {
				t.Errorf("exit code %d, want %d (stderr: %s)", r.code, c.code, r.stderr)
			}
			if !strings.Contains(r.stderr, c.want) {
				t.Errorf("stderr %q lacks %q", r.stderr, c.want)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("stderr shows a panic or stack:\n%s", r.stderr)
			}
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n") + 1; lines > 2 {
				t.Errorf("error takes %d lines, want one:\n%s", lines, r.stderr)
			}
			if c.code == 2 && r.stdout != "" {
				t.Errorf("a usage error wrote to stdout (where a command's output goes):\n%s", r.stdout)
			}
		})
	}
}

func TestHelpListsEveryCommandAndEnv(t *testing.T) {
	r := run(t, nil, "--help")
	if r.code != 0 {
		t.Fatalf("exit %d", r.code)
	}
	for _, c := range []string{"agent", "simulate", "ingest", "migrate", "query", "demo"} {
		if !strings.Contains(r.stdout, "  "+c+" ") {
			t.Errorf("help lacks %s:\n%s", c, r.stdout)
		}
		sub := run(t, nil, c, "--help")
		if sub.code != 0 || strings.Count(sub.stdout, "Usage: gpufleet "+c) != 1 || !strings.Contains(sub.stdout, "[GPUFLEET_LOG_LEVEL]") {
			t.Errorf("%s --help: exit %d, stdout:\n%s", c, sub.code, sub.stdout)
		}
	}
}

// The ingest settings that bound bad input and per-agent memory are flags with their defaults
// shown (before they were ingest.Config fields only).
func TestIngestHelpShowsTuning(t *testing.T) {
	r := run(t, nil, "ingest", "--help")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"--dlq-max-mib  [GPUFLEET_DLQ_MAX_MIB]", "(DLQMaxBytes; 1..1024) (default 64)",
		"--max-clock-ahead  [GPUFLEET_MAX_CLOCK_AHEAD]", "(default 1h0m0s)",
		"--clock-skew-tolerance  [GPUFLEET_CLOCK_SKEW_TOLERANCE]", "(default 5s)",
		"--skew-log-interval  [GPUFLEET_SKEW_LOG_INTERVAL]", "(default 1m0s)",
		"--agent-state-max  [GPUFLEET_AGENT_STATE_MAX]", "(default 50000)",
		"--agent-state-idle  [GPUFLEET_AGENT_STATE_IDLE]",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("ingest --help lacks %q:\n%s", want, r.stdout)
		}
	}
}

// The agent-only build (make agent) has the node commands and links nothing of ClickHouse, the
// embedded engine or the in-process broker: that is what keeps the agent under 30 MB resident.
func TestAgentOnlyBuild(t *testing.T) {
	deps, err := exec.Command("go", "list", "-deps", "-tags", "agentonly", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, deps)
	}
	for _, heavy := range []string{"github.com/gpufleet/gpufleet/internal/store", "github.com/ClickHouse/clickhouse-go/v2",
		"github.com/ebitengine/purego", "github.com/twmb/franz-go/pkg/kfake", "github.com/gpufleet/gpufleet/ingest"} {
		if regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(heavy) + `$`).Match(deps) {
			t.Errorf("the agent-only build links %s", heavy)
		}
	}
	bin := filepath.Join(t.TempDir(), "gpufleet-agent")
	if out, err := exec.Command("go", "build", "-tags", "agentonly", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -tags agentonly: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "  agent ") || !strings.Contains(string(out), "  simulate ") ||
		strings.Contains(string(out), "  ingest ") || !strings.Contains(string(out), "agent-only build") {
		t.Errorf("gpufleet-agent help (%v):\n%s", err, out)
	}
	cmd := exec.Command(bin, "ingest")
	out, err = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), `unknown command "ingest"`) {
		t.Errorf("gpufleet-agent ingest: exit %d (%v), %s", cmd.ProcessState.ExitCode(), err, out)
	}
}
