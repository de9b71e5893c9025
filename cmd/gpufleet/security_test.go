package main_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// Every listening address defaults to loopback: a daemon started without flags serves nothing to
// other hosts until told to (a container passes 0.0.0.0:PORT).
func TestListenAddressesDefaultToLoopback(t *testing.T) {
	cases := []struct{ command, flag, want string }{
		{"agent", "metrics-addr", "127.0.0.1:9410"},
		{"ingest", "metrics-addr", "127.0.0.1:9401"},
		{"simulate", "metrics-addr", "127.0.0.1:9402"},
		{"api", "http", "127.0.0.1:8081"},
		{"demo", "http", "127.0.0.1:8080"},
	}
	for _, c := range cases {
		t.Run(c.command+" --"+c.flag, func(t *testing.T) {
			r := run(t, nil, c.command, "--help")
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got := flagDefault(r.stdout, c.flag); got != c.want {
				t.Errorf("--%s defaults to %q, want %q; help:\n%s", c.flag, got, c.want, r.stdout)
			}
		})
	}
}

// flagDefault reads "(default X)" from a flag's entry in --help output.
func flagDefault(help, flag string) string {
	_, entry, ok := strings.Cut(help, "  --"+flag+"  [")
	if !ok {
		return "<no such flag>"
	}
	if next := strings.Index(entry, "\n  --"); next >= 0 {
		entry = entry[:next]
	}
	m := regexp.MustCompile(`\(default ([^)]*)\)`).FindStringSubmatch(entry)
	if m == nil {
		return ""
	}
	return m[1]
}

// A DSN's password never shows in what the CLI prints, however the DSN is malformed; the error
// names the flag (the library names only the field).
func TestDSNSecretsStayOutOfErrors(t *testing.T) {
	cases := []struct {
		dsn     string
		secrets []string
	}{
		{"clickhous://u:S3cr3tPw@127.0.0.1:9000/db", []string{"S3cr3tPw"}},
		{"clickhouse://u:S3cr3tPw@127.0.0.1:1/a-b", []string{"S3cr3tPw"}},
		{"clickhouse://u:S3cr3tPw@127.0.0.1:1/gpufleet", []string{"S3cr3tPw"}},
		{"clickhouse://127.0.0.1:1/gpufleet?password=S3cr3tPw", []string{"S3cr3tPw"}},
		{"clickhouse://127.0.0.1:1/gpufleet?pass%77ord=S3cr3tPw&secure=maybe", []string{"S3cr3tPw"}},
		{"clickhouse://127.0.0.1:1/gpufleet?password=S3cr3tPw&dial_timeout=S3cr3tPw", []string{"S3cr3tPw"}},
		{"clickhouse://u:S3cr/3tPw@127.0.0.1:1/gpufleet", []string{"S3cr", "3tPw"}},
		{"clickhouse://u:12/S3cr3tPw@127.0.0.1:1/gpufleet", []string{"S3cr3tPw"}},
		{"clickhouse://u:12?S3cr3tPw@127.0.0.1:1/gpufleet", []string{"S3cr3tPw"}},
		{"clickhouse://u:S3cr3t%2FPw@127.0.0.1:1/a-b", []string{"S3cr3t"}},
		{"clickhouse://u:pässwörd-S3cr3t@127.0.0.1:1/gpufleet", []string{"pässwörd", "S3cr3t"}},
		{"clickhouse://u:S3cr3tPw@127.0.0.1:notaport/gpufleet", []string{"S3cr3tPw"}},
		{"mysql://u:S3cr3tPw@h/db", []string{"S3cr3tPw"}},
		{"u:S3cr3tPw@127.0.0.1:9000", []string{"S3cr3tPw"}},
		{"S3cr3tPw", []string{"S3cr3tPw"}},
	}
	for _, c := range cases {
		t.Run(c.dsn, func(t *testing.T) {
			for _, args := range [][]string{
				{"query", "--clickhouse", c.dsn},
				{"migrate", "--clickhouse", c.dsn},
			} {
				r := run(t, []string{"GPUFLEET_LOG_JSON=true"}, args...)
				if r.code == 0 {
					t.Fatalf("%v succeeded", args)
				}
				for _, s := range c.secrets {
					if strings.Contains(r.stderr+r.stdout, s) {
						t.Errorf("%v prints %q:\n%s%s", args, s, r.stdout, r.stderr)
					}
				}
				if r.code == 2 && !strings.Contains(r.stderr, "--clickhouse") {
					t.Errorf("%v: the usage error does not name --clickhouse: %s", args, r.stderr)
				}
			}
		})
	}
	// The environment variable takes the same path.
	r := run(t, []string{"GPUFLEET_CLICKHOUSE=clickhous://u:S3cr3tPw@127.0.0.1:9000/db"}, "query")
	if r.code != 2 || strings.Contains(r.stderr, "S3cr3tPw") || !strings.Contains(r.stderr, "clickhous://u:xxxxx@127.0.0.1:9000/db") {
		t.Errorf("GPUFLEET_CLICKHOUSE: exit %d, %s", r.code, r.stderr)
	}
}

// daemon is a gpufleet process left running, with its stderr collected line by line.
type daemon struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	ready chan string // the first line matching the wait pattern
	first string      // that line
	done  chan struct{}
}

func startDaemon(t *testing.T, env []string, wait *regexp.Regexp, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, ready: make(chan string, 1), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			d.mu.Lock()
			d.lines = append(d.lines, sc.Text())
			d.mu.Unlock()
			if !sent && wait.MatchString(sc.Text()) {
				d.ready <- sc.Text()
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() { d.stop() })
	select {
	case d.first = <-d.ready:
	case <-d.done:
		t.Fatalf("%v exited before %s:\n%s", args, wait, d.stderr())
	case <-time.After(2 * time.Minute): // a guard against a hang, not a timed assertion
		t.Fatalf("%v: no %s:\n%s", args, wait, d.stderr())
	}
	return d
}

func (d *daemon) stderr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "\n")
}

// stop sends SIGTERM and waits for the process and its output.
func (d *daemon) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	_ = d.cmd.Wait()
}

// The API asks for its bearer token on every path but /healthz, /metrics included; answers 401
// with a challenge without it; logs a line per request; and never prints the token or the DSN's
// password. The start-up line masks ?password= and token= in a chDB DSN.
func TestAPIBearerTokenAndAccessLog(t *testing.T) {
	lib := testenv.LibCHDB(t)
	dir := t.TempDir()
	env := []string{"GPUFLEET_LIBCHDB=" + lib}
	if r := run(t, env, "migrate", "--clickhouse", "chdb://"+dir); r.code != 0 {
		t.Fatalf("migrate: exit %d: %s", r.code, r.stderr)
	}
	const token = "Tok3n-0f-the-API-5f2c9e"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := "chdb://" + dir + "?password=DbS3cr3tPw&token=DbT0kenS3cret"
	cases := []struct {
		name string
		env  []string
		args []string
	}{
		{"--api-token-file", nil, []string{"--api-token-file", tokenFile}},
		{"GPUFLEET_API_TOKEN", []string{"GPUFLEET_API_TOKEN=" + token}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"api", "--clickhouse", dsn, "--http", "127.0.0.1:0"}, c.args...)
			d := startDaemon(t, append(env, c.env...), regexp.MustCompile(`msg="serving the query API"`), args...)
			line := d.first
			m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
			if m == nil || !strings.Contains(line, "token=true") || !strings.Contains(line, "password=xxxxx") || !strings.Contains(line, "token=xxxxx") {
				t.Fatalf("start-up line %q: want addr=, token=true and the DSN's secrets masked", line)
			}
			base := "http://" + m[1]
			get := func(path, auth string) (int, http.Header, string) {
				req, err := http.NewRequestWithContext(context.Background(), "GET", base+path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if auth != "" {
					req.Header.Set("Authorization", auth)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, resp.Header, string(b)
			}
			for _, tc := range []struct {
				path, auth string
				code       int
			}{
				{"/healthz", "", 200},
				{"/api/v1/summary?since=1h", "", 401},
				{"/api/v1/summary?since=1h", "Bearer wrong", 401},
				{"/metrics", "", 401},
				{"/api/v1/summary?since=1h", "Bearer " + token, 200},
				{"/metrics", "Bearer " + token, 200},
				{"/api/v1/series?metric=nope", "Bearer " + token, 400},
			} {
				code, h, body := get(tc.path, tc.auth)
				if code != tc.code {
					t.Errorf("GET %s (%q): %d %s, want %d", tc.path, tc.auth, code, body, tc.code)
				}
				if code == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("GET %s: 401 without a Bearer challenge", tc.path)
				}
			}
			d.stop()
			out := d.stderr()
			for _, s := range []string{token, "DbS3cr3tPw", "DbT0kenS3cret"} {
				if strings.Contains(out, s) {
					t.Errorf("stderr shows %q:\n%s", s, out)
				}
			}
			for _, want := range []string{
				`msg="http request" method=GET path=/healthz query="" status=200`,
				`msg="http request" method=GET path=/api/v1/summary query="since=1h" status=401`,
				`msg="http request" method=GET path=/api/v1/summary query="since=1h" status=200`,
				`msg="http request" method=GET path=/metrics query="" status=200`,
				`path=/api/v1/series query="metric=nope" status=400`,
			} {
				if !strings.Contains(out, want) {
					t.Errorf("no access line with %q in:\n%s", want, out)
				}
			}
		})
	}
	// Reachable from other hosts without a token: served, with a warning.
	d := startDaemon(t, env, regexp.MustCompile(`msg="serving the query API"`), "api", "--clickhouse", "chdb://"+dir, "--http", "0.0.0.0:0")
	if out := d.stderr(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "without a token") || !strings.Contains(d.first, "token=false") {
		t.Errorf("api on 0.0.0.0 without a token: no warning in:\n%s", out)
	}
}

// Without a token the API still starts, and says so when it is reachable from other hosts; bad
// token settings are usage errors that do not echo the token.
func TestAPITokenSettings(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"both", nil, []string{"--api-token", "abc", "--api-token-file", empty}, "give one, not both"},
		{"empty file", nil, []string{"--api-token-file", empty}, "is empty"},
		{"missing file", nil, []string{"--api-token-file", filepath.Join(t.TempDir(), "nope")}, "--api-token-file"},
		{"space in token", []string{"GPUFLEET_API_TOKEN=has a S3cr3t space"}, nil, "printable ASCII without spaces"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, append([]string{"api"}, c.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "S3cr3t") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, c.want)
			}
		})
	}
}
