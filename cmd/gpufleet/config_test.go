package main_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gpufleet.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// setting is one flag's line of --print-config: its value and where it came from.
func setting(t *testing.T, out, flag string) (value, source string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(flag) + `: "([^"]*)"\s+# (.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("--print-config shows no %s:\n%s", flag, out)
	}
	return m[1], m[2]
}

// A flag beats its environment variable, which beats the config file, which beats the default;
// a command's section beats the file's top level, and another command's section is not read.
func TestConfigPrecedence(t *testing.T) {
	file := writeConfig(t, "batch-rows: 111\nbrokers: filebroker:9092\ningest:\n  batch-age: 7s\n  brokers: sectionbroker:9092\nagent:\n  state-dir: /nonexistent\n")
	other := writeConfig(t, "batch-rows: 999\n")
	cases := []struct {
		name       string
		env        []string
		args       []string
		flag, want string
		from       string // a prefix of the source shown
	}{
		{"default", nil, []string{"ingest"}, "batch-rows", "100000", "default"},
		{"file", nil, []string{"ingest", "--config", file}, "batch-rows", "111", "file " + file + ":1"},
		{"file by env", []string{"GPUFLEET_CONFIG=" + file}, []string{"ingest"}, "batch-rows", "111", "file " + file + ":1"},
		{"--config beats GPUFLEET_CONFIG", []string{"GPUFLEET_CONFIG=" + other}, []string{"ingest", "--config", file}, "batch-rows", "111", "file " + file},
		{"env beats file", []string{"GPUFLEET_BATCH_ROWS=222"}, []string{"ingest", "--config", file}, "batch-rows", "222", "env GPUFLEET_BATCH_ROWS"},
		{"flag beats env and file", []string{"GPUFLEET_BATCH_ROWS=222"}, []string{"ingest", "--config", file, "--batch-rows", "333"}, "batch-rows", "333", "flag"},
		{"section", nil, []string{"ingest", "--config", file}, "batch-age", "7s", "file " + file + ":4"},
		{"section beats top level", nil, []string{"ingest", "--config", file}, "brokers", "sectionbroker:9092", "file " + file + ":5"},
		{"other command's section unread", nil, []string{"simulate", "--config", writeConfig(t, "brokers: b:9092\ningest:\n  batch-rows: 5\n")}, "brokers", "b:9092", "file"},
		{"env beats section", []string{"GPUFLEET_BROKERS=envbroker:9092"}, []string{"ingest", "--config", file}, "brokers", "envbroker:9092", "env GPUFLEET_BROKERS"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, append(c.args, "--print-config")...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			v, src := setting(t, r.stdout, c.flag)
			if v != c.want || !strings.HasPrefix(src, c.from) {
				t.Errorf("%s = %q from %q; want %q from %q", c.flag, v, src, c.want, c.from)
			}
		})
	}
}

// A config file the command cannot use stops it (exit 2) on one line naming the key and its line.
func TestConfigFileErrors(t *testing.T) {
	cases := []struct {
		name, body string
		cmd        string
		want       string // after "PATH:" in stderr
	}{
		{"unknown key", "brokers: k:9092\n\nbatch-row: 5\n", "ingest", `3: unknown key "batch-row": gpufleet ingest has no --batch-row`},
		{"another command's flag", "# agent settings\nstate-dir: /x\n", "ingest", `2: unknown key "state-dir": gpufleet ingest has no --state-dir; it is a flag of agent`},
		{"unknown key in the section", "ingest:\n  workers: 2\n  wrokers: 3\n", "ingest", `3: unknown key "wrokers"`},
		{"misspelt section", "ingset:\n  workers: 2\n", "ingest", `1: unknown key "ingset": not a command's section`},
		{"bad value", "workers: 2\nbatch-rows: lots\n", "ingest", `2: batch-rows: invalid value "lots" (--batch-rows): want an integer`},
		{"bad value in the section", "simulate:\n  gpus: many\n", "simulate", `2: gpus: invalid value "many" (--gpus)`},
		{"bad duration", "batch-age: soon\n", "ingest", `1: batch-age: invalid value "soon" (--batch-age): want a duration`},
		{"no value", "metrics-addr:\n", "ingest", `1: metrics-addr: no value`},
		{"a list", "brokers:\n  - a:9092\n  - b:9092\n", "ingest", `2: brokers: want a single value`},
		{"set twice", "workers: 2\nworkers: 3\n", "ingest", `2: workers: set twice (first at line 1)`},
		{"config in the file", "config: /other.yaml\n", "ingest", `1: config cannot be set in a config file`},
		{"not a mapping", "- workers\n", "ingest", `1: want a mapping`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.body)
			r := run(t, nil, c.cmd, "--config", path)
			if r.code != 2 || !strings.Contains(r.stderr, path+":"+c.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, path+":"+c.want)
			}
			if lines := strings.Count(strings.TrimSpace(r.stderr), "\n") + 1; lines > 1 || r.stdout != "" {
				t.Errorf("want one line on stderr and nothing on stdout; got stdout %q, stderr:\n%s", r.stdout, r.stderr)
			}
		})
	}
	// A value the command's own checks refuse is named by its flag, and where it was set.
	path := writeConfig(t, "ingest:\n  batch-rows: -1\n")
	r := run(t, nil, "ingest", "--config", path)
	if want := "--batch-rows -1 (BatchRows): must be at least 1 [--batch-rows from file " + path + ":2]"; r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
	}
	r = run(t, []string{"GPUFLEET_SESSION_TIMEOUT=10ms"}, "ingest")
	if want := "[--session-timeout from env GPUFLEET_SESSION_TIMEOUT]"; r.code != 2 || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, want)
	}
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if r := run(t, []string{"GPUFLEET_CONFIG=" + missing}, "simulate"); r.code != 2 || !strings.Contains(r.stderr, "--config: open "+missing) {
		t.Errorf("missing file: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := run(t, nil, "ingest", "--config", writeConfig(t, "workers: [\n")); r.code != 2 || !strings.Contains(r.stderr, "yaml:") {
		t.Errorf("bad YAML: exit %d, stderr %q", r.code, r.stderr)
	}
}

// --print-config never shows a secret, however it was given: a password in every flag that can
// hold one, by file, by environment and on the command line.
func TestPrintConfigRedactsSecrets(t *testing.T) {
	const pw = "hunter2Secret"
	dsn := "clickhouse://alice:" + pw + "@db:9000/gpufleet?password=" + pw + "&access_token=" + pw
	secrets := map[string][]struct{ flag, value string }{
		"ingest":   {{"clickhouse", dsn}, {"shards", dsn + " " + dsn}},
		"migrate":  {{"clickhouse", dsn}},
		"query":    {{"clickhouse", dsn}},
		"api":      {{"clickhouse", dsn}, {"api-token", pw}},
		"demo":     {{"api-token", pw}},
		"agent":    nil, // the SASL password alone, below
		"simulate": nil,
		"topics":   nil,
	}
	for cmd, flags := range secrets {
		for _, via := range []string{"file", "section", "env", "flag"} {
			t.Run(cmd+"/"+via, func(t *testing.T) {
				env := []string{"GPUFLEET_KAFKA_SASL_PASSWORD=" + pw}
				args := []string{cmd, "--print-config"}
				var body strings.Builder
				if via == "section" {
					body.WriteString(cmd + ":\n")
				}
				for _, f := range flags {
					switch via {
					case "file":
						fmt.Fprintf(&body, "%s: %q\n", f.flag, f.value)
					case "section":
						fmt.Fprintf(&body, "  %s: %q\n", f.flag, f.value)
					case "env":
						env = append(env, "GPUFLEET_"+strings.ToUpper(strings.ReplaceAll(f.flag, "-", "_"))+"="+f.value)
					case "flag":
						args = append(args, "--"+f.flag, f.value)
					}
				}
				if via == "file" || via == "section" {
					args = append(args, "--config", writeConfig(t, body.String()))
				}
				r := run(t, env, args...)
				if r.code != 0 {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				if strings.Contains(r.stdout+r.stderr, pw) {
					t.Errorf("a secret is shown:\n%s%s", r.stdout, r.stderr)
				}
				for _, f := range flags {
					v, src := setting(t, r.stdout, f.flag)
					if !strings.Contains(v, "xxxxx") && v != "(redacted)" {
						t.Errorf("%s = %q: not redacted", f.flag, v)
					}
					if wantSrc := map[string]string{"section": "file", "file": "file", "env": "env", "flag": "flag"}[via]; !strings.HasPrefix(src, wantSrc) {
						t.Errorf("%s from %q, want %s", f.flag, src, wantSrc)
					}
				}
				if strings.Contains(r.stdout, "kafka-sasl-password-file") && !strings.Contains(r.stdout, "# GPUFLEET_KAFKA_SASL_PASSWORD: set (redacted)") {
					t.Errorf("--print-config does not say the SASL password is set:\n%s", r.stdout)
				}
			})
		}
	}
	// A value refused by its flag is not echoed either when it is a secret: the token is a string
	// (any value parses), so the check is on the DSN's refusal at open, covered by
	// TestDSNSecretsStayOutOfErrors; here only that the file's DSN is redacted in errors.
	path := writeConfig(t, "clickhouse: \"mysql://alice:"+pw+"@db\"\n")
	if r := run(t, nil, "migrate", "--config", path); r.code != 2 || strings.Contains(r.stderr, pw) {
		t.Errorf("bad DSN from the file: exit %d, stderr %q", r.code, r.stderr)
	}
}

// `gpufleet version` prints what the build information holds: the toolchain, and the commit when
// the build recorded one (go version -m reads the same).
func TestVersion(t *testing.T) {
	info, err := exec.Command("go", "version", "-m", binary).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, info)
	}
	commit := "unknown"
	if m := regexp.MustCompile(`(?m)^\s+build\s+vcs\.revision=(\S+)$`).FindSubmatch(info); m != nil {
		commit = string(m[1])
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := run(t, nil, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		for _, want := range []string{
			"go           " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n",
			"commit       " + commit,
			"build        full\n",
			"nvml         go-nvml v",
			"chdb         not loaded",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%v lacks %q:\n%s", args, want, r.stdout)
			}
		}
	}
	if r := run(t, nil, "version", "extra"); r.code != 2 {
		t.Errorf("version extra: exit %d, want 2", r.code)
	}
}

// A GPUFLEET_ variable no command reads is reported at start-up; one another command reads, or
// the SASL password, is not.
func TestUnknownEnvReported(t *testing.T) {
	cases := []struct {
		name string
		env  []string
		want string // "" wants no warning
	}{
		{"typo", []string{"GPUFLEET_BATCH_ROW=5", "GPUFLEET_FOO=1"}, "vars=GPUFLEET_BATCH_ROW,GPUFLEET_FOO"},
		{"another command's", []string{"GPUFLEET_CLICKHOUSE=chdb:///x", "GPUFLEET_BATCH_ROWS=5"}, ""},
		{"the SASL password", []string{"GPUFLEET_KAFKA_SASL_PASSWORD=x"}, ""},
		{"the test broker", []string{"GPUFLEET_TEST_BROKERS=127.0.0.1:1"}, ""},
		{"compose's ClickHouse password", []string{"GPUFLEET_CH_READER_PASSWORD=x"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, "simulate", "--print-config")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			switch {
			case c.want == "" && r.stderr != "":
				t.Errorf("unexpected warning: %s", r.stderr)
			case c.want != "" && (!strings.Contains(r.stderr, c.want) || !strings.Contains(r.stderr, "level=WARN") || !strings.Contains(r.stderr, "typo")):
				t.Errorf("stderr %q; want a warning naming %q", r.stderr, c.want)
			}
		})
	}
}

// bgDaemon is a command running in the background, its stderr read as it comes.
type bgDaemon struct {
	cmd    *exec.Cmd
	stderr lockedBuffer
	addr   chan string
}

var servingMetrics = regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)

func startBg(t *testing.T, env []string, args ...string) *bgDaemon {
	t.Helper()
	d := &bgDaemon{cmd: exec.Command(binary, args...), addr: make(chan string, 1)}
	d.cmd.Env = append(cleanEnv(), env...)
	pr, pw := io.Pipe()
	d.cmd.Stderr = pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			_, _ = d.stderr.Write(append(sc.Bytes(), '\n'))
			if m := servingMetrics.FindStringSubmatch(sc.Text()); m != nil {
				d.addr <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		_ = d.cmd.Wait()
		pw.Close()
	})
	return d
}

func (d *bgDaemon) metricsAddr(t *testing.T) string {
	t.Helper()
	select {
	case a := <-d.addr:
		return a
	case <-time.After(2 * time.Minute):
		t.Fatalf("no metrics listener:\n%s", d.stderr.String())
	}
	return ""
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls /readyz until it answers 200: a bgDaemon is not ready at once (ingest joins its
// group first), and how long that takes is the broker's business.
func waitReady(t *testing.T, d *bgDaemon, addr string) string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body := get(t, "http://"+addr+"/readyz")
		if code == http.StatusOK {
			return body
		}
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: ") {
			t.Fatalf("/readyz: %d %q; want 200, or 503 with the reason", code, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q\n%s", code, body, d.stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// /healthz and /readyz on the metrics listener of simulate and ingest, with a real broker (and,
// for ingest, the real engine): both answer 200 once the bgDaemon is doing its job.
func TestHealthAndReadiness(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: wire.SamplesTopic, Partitions: 1},
		{Name: wire.EventsTopic, Partitions: 1}, {Name: wire.DLQTopic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	lib := testenv.LibCHDB(t)
	dsn := "chdb://" + t.TempDir()
	if r := run(t, []string{"GPUFLEET_LIBCHDB=" + lib}, "migrate", "--clickhouse", dsn); r.code != 0 {
		t.Fatalf("migrate: exit %d: %s", r.code, r.stderr)
	}
	cases := []struct {
		name string
		env  []string
		args []string
	}{
		{"simulate", nil, []string{"simulate", "--gpus", "8", "--interval", "100ms", "--brokers", strings.Join(brokers, ","), "--metrics-addr", "127.0.0.1:0"}},
		{"ingest", []string{"GPUFLEET_LIBCHDB=" + lib}, []string{"ingest", "--clickhouse", dsn, "--brokers", strings.Join(brokers, ","),
			"--group", "readyz-" + fmt.Sprint(time.Now().UnixNano()), "--metrics-addr", "127.0.0.1:0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := startBg(t, c.env, c.args...)
			addr := d.metricsAddr(t)
			if code, body := get(t, "http://"+addr+"/healthz"); code != http.StatusOK || body != "ok\n" {
				t.Errorf("/healthz: %d %q", code, body)
			}
			if body := waitReady(t, d, addr); body != "ready\n" {
				t.Errorf("/readyz: %q", body)
			}
			if code, _ := get(t, "http://"+addr+"/metrics"); code != http.StatusOK {
				t.Errorf("/metrics: %d", code)
			}
			// The containers' probe (docker-compose.yml): the binary GETs its own endpoints.
			for _, path := range []string{"/healthz", "/readyz"} {
				if r := run(t, nil, "healthcheck", "http://"+addr+path); r.code != 0 {
					t.Errorf("healthcheck %s: exit %d: %s", path, r.code, r.stderr)
				}
			}
			if r := run(t, nil, "healthcheck", "http://"+addr+"/nope"); r.code != 1 || !strings.Contains(r.stderr, "404 Not Found") {
				t.Errorf("healthcheck of a missing path: exit %d: %s", r.code, r.stderr)
			}
		})
	}
}
