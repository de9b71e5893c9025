package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// The pipeline runs with least privilege on a broker that refuses whatever no ACL allows: after
// deploy/kafka/acls.sh (the shipped script itself, run as the broker's super user), the admin
// user creates the topics with `gpufleet topics`, the agent user streams samples and events, the
// ingest user stores them all in chDB, and each is refused what it was not granted, at once and
// in one line naming the user, the operation and the topic.
func TestLeastPrivilegeACLs(t *testing.T) {
	b := testenv.NewACLKafka(t)
	lib := testenv.LibCHDB(t)
	dsn := "chdb://" + t.TempDir()
	pwDir := t.TempDir()
	base := []string{"GPUFLEET_LIBCHDB=" + lib, "GPUFLEET_BROKERS=" + b.Addr, "GPUFLEET_METRICS_ADDR=",
		// Refusals must not wait this out: run gives up after 2 minutes.
		"GPUFLEET_CONNECT_TIMEOUT=10m",
		"GPUFLEET_KAFKA_TLS_CA=" + b.CAFile, "GPUFLEET_KAFKA_TLS_CERT=" + b.CertFile, "GPUFLEET_KAFKA_TLS_KEY=" + b.KeyFile,
		"GPUFLEET_KAFKA_SASL_MECHANISM=scram-sha-512"}
	as := func(user string) []string {
		pw := filepath.Join(pwDir, user)
		if err := os.WriteFile(pw, []byte(b.Users[user]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return append(append([]string{}, base...), "GPUFLEET_KAFKA_SASL_USER="+user, "GPUFLEET_KAFKA_SASL_PASSWORD_FILE="+pw)
	}
	noSecret := func(what, out string) {
		t.Helper()
		for user, pw := range b.Users {
			if strings.Contains(out, pw) {
				t.Errorf("%s: the password of %s in the output:\n%s", what, user, out)
			}
		}
	}
	if r := run(t, base, "migrate", "--clickhouse", dsn); r.code != 0 {
		t.Fatalf("migrate: exit %d %s", r.code, r.stderr)
	}

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := exec.Command("bash", filepath.Join(root, "deploy/kafka/acls.sh"), "--bootstrap-server", b.Addr, "--command-config", b.SuperConfig)
	if out, err := script.CombinedOutput(); err != nil {
		t.Fatalf("deploy/kafka/acls.sh: %v\n%s", err, out)
	}

	// Refusals first, while the topics do not exist: an agent may not create them.
	refusals := []struct {
		name, user string
		args       []string
		want       string
	}{
		{"topics as agent", "agent", []string{"topics", "--partitions", "2"},
			`gpufleet topics: --kafka-sasl-user: user "agent" may not Create topic gpu.samples (Topic Authorization Failed): ` +
				"topics are created by an admin user: run `gpufleet topics` as one"},
	}
	check := func(c struct {
		name, user string
		args       []string
		want       string
	}) {
		t.Helper()
		start := time.Now()
		r := run(t, as(c.user), c.args...)
		t.Logf("%s: exit %d after %s", c.name, r.code, time.Since(start).Round(time.Millisecond))
		line := lastLine(r.stderr)
		if r.code != 1 || !strings.HasPrefix(line, c.want) {
			t.Errorf("%s: exit %d, last line\n%q\nwant 1 and\n%q\n%s", c.name, r.code, line, c.want, r.stderr)
		}
		if n := strings.Count(r.stderr, "retrying"); n > 0 {
			t.Errorf("%s: %d retries of a refusal:\n%s", c.name, n, r.stderr)
		}
		noSecret(c.name, r.stdout+r.stderr)
	}
	for _, c := range refusals {
		check(c)
	}

	r := run(t, as("admin"), "topics", "--partitions", "2")
	if r.code != 0 || strings.Count(r.stdout, ": created,") != 3 {
		t.Fatalf("topics as admin: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, as("admin"), "topics", "--partitions", "2", "--retention", "48h"); r.code != 0 || strings.Count(r.stdout, "updated retention.ms") != 2 {
		t.Errorf("topics as admin, changing a config: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		name, user string
		args       []string
		want       string
	}{
		{"simulate with no ACL", "nobody", []string{"simulate", "--gpus", "8", "--for", "1s"},
			`gpufleet simulate: --kafka-sasl-user: user "nobody" may not Describe topic gpu.samples (Topic Authorization Failed): ` +
				"an admin grants it with Kafka ACLs (deploy/kafka/acls.sh) (Kafka at " + b.Addr + ")"},
		{"simulate with no ACL, spooling", "nobody", []string{"simulate", "--gpus", "8", "--for", "1m", "--spool-dir", t.TempDir()},
			`gpufleet simulate: --kafka-sasl-user: user "nobody" may not Describe topic gpu.samples`},
		{"ingest as agent", "agent", []string{"ingest", "--clickhouse", dsn},
			`gpufleet ingest: --kafka-sasl-user: user "agent" may not Describe topic gpu.dlq`},
		{"ingest in a group it may not use", "ingest", []string{"ingest", "--clickhouse", dsn, "--group", "other"},
			`gpufleet ingest: --kafka-sasl-user: user "ingest" may not Describe group other`},
		{"simulate as the ingest user, which may not write", "ingest", []string{"simulate", "--gpus", "8", "--for", "1m", "--spool-dir", t.TempDir()},
			`gpufleet simulate: --kafka-sasl-user: user "ingest" may not Write topic gpu.samples (Topic Authorization Failed)`},
		{"topics as ingest", "ingest", []string{"topics", "--partitions", "2"},
			`gpufleet topics: --kafka-sasl-user: user "ingest" may not Create topic gpu.samples (Topic Authorization Failed)`},
	} {
		check(c)
	}

	// The ingest user reads gpu.samples but may not write it.
	conn, err := kafka.Config{TLS: kafka.TLS{Enable: true, CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile},
		SASL: kafka.SASL{Mechanism: kafka.ScramSHA512, Username: "ingest", Password: b.Users["ingest"]}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := &kafkago.Writer{Addr: kafkago.TCP(b.Addr), Transport: conn.Transport(), Topic: "gpu.samples", RequiredAcks: kafkago.RequireAll}
	werr := w.WriteMessages(ctx, kafkago.Message{Key: []byte("k"), Value: []byte("v")})
	w.Close()
	var werrs kafkago.WriteErrors
	if !errors.As(werr, &werrs) || len(werrs) != 1 || !errors.Is(werrs[0], kafkago.TopicAuthorizationFailed) {
		t.Errorf("the ingest user writing gpu.samples: %v; want %v", werr, kafkago.TopicAuthorizationFailed)
	}

	// The agent streams with the agent ACLs only.
	// The simulator's events follow its clock: an XID comes on average once per 2,000 GPU-ticks and
	// throttling only in the hot phase of a minutes-long cycle, so 16 GPUs for 3 s raised none in five
	// runs once (P ≈ 0.3). 128 GPUs make ~2 XIDs a run (P(none in five) ≈ 1e-4); run again until one did.
	var samples, events int
	for try := 0; try < 5 && (samples == 0 || events == 0); try++ {
		r = run(t, as("agent"), "simulate", "--gpus", "128", "--interval", "100ms", "--for", "3s", "--seed", "7")
		if r.code != 0 {
			t.Fatalf("simulate as agent: exit %d %s", r.code, r.stderr)
		}
		stopped := regexp.MustCompile(`msg=stopped samples=(\d+) batches=(\d+) events=(\d+)`).FindStringSubmatch(r.stderr)
		if stopped == nil {
			t.Fatalf("simulate as agent: no stopped line:\n%s", r.stderr)
		}
		n, _ := strconv.Atoi(stopped[1])
		ev, _ := strconv.Atoi(stopped[3])
		samples, events = samples+n, events+ev
	}
	if samples == 0 || events == 0 {
		t.Fatalf("simulate as agent delivered %d samples and %d events; want some of each:\n%s", samples, events, r.stderr)
	}
	noSecret("simulate as agent", r.stderr)

	// Ingest stores them with the ingest ACLs only.
	d := startDaemon(t, append(as("ingest"), "GPUFLEET_METRICS_ADDR=127.0.0.1:0"), regexp.MustCompile(`msg="serving metrics"`),
		"ingest", "--clickhouse", dsn, "--batch-age", "200ms")
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(d.first)
	if addr == nil {
		t.Fatalf("no metrics address in %q", d.first)
	}
	for guard := time.Now().Add(2 * time.Minute); ; { // a guard against a hang, not a timed assertion
		m := scrape(t, "http://"+addr[1]+"/metrics")
		if m["gpufleet_ingest_sample_rows_total"] >= float64(samples) && m["gpufleet_ingest_event_rows_total"] >= float64(events) {
			break
		}
		if time.Now().After(guard) {
			t.Fatalf("ingest as ingest stored %v sample and %v event rows of %d and %d:\n%s", m["gpufleet_ingest_sample_rows_total"],
				m["gpufleet_ingest_event_rows_total"], samples, events, d.stderr())
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.stop()
	// A group coordinator still starting may be retried; a refusal may not.
	if strings.Contains(d.stderr(), "Authorization") {
		t.Errorf("ingest as ingest was refused something:\n%s", d.stderr())
	}
	noSecret("ingest as ingest", d.stderr())
	for table, want := range map[string]int{"gpu_samples": samples, "gpu_events": events} {
		r := run(t, base, "query", "--clickhouse", dsn, "--sql", "SELECT count() AS n FROM gpufleet."+table+" WHERE $__timeFilter(time)")
		var out struct {
			Rows [][]any `json:"rows"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); r.code != 0 || err != nil || fmt.Sprint(out.Rows) != fmt.Sprintf("[[%d]]", want) {
			t.Errorf("%s: exit %d, %s (%v); want %d rows\n%s", table, r.code, r.stdout, err, want, r.stderr)
		}
	}
}

// scrape reads a Prometheus text page into name → value, summed over the labels.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var name string
		var v float64
		if _, err := fmt.Sscanf(sc.Text(), "%s %g", &name, &v); err == nil && !strings.HasPrefix(name, "#") {
			name, _, _ = strings.Cut(name, "{")
			out[name] += v
		}
	}
	return out
}
