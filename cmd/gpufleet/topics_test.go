package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/testenv"
)

// lastLine is the error line a failed command ends with.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// Topics are an admin step: simulate and ingest refuse to start without them and say what to run
// (before, every agent created them, replication factor 1, and needed the right to); `gpufleet
// topics` creates them once, and again finds them and changes nothing.
func TestTopicsAdminStep(t *testing.T) {
	broker := testenv.NewKafka(t)
	lib := testenv.LibCHDB(t)
	dsn := "chdb://" + t.TempDir()
	env := []string{"GPUFLEET_LIBCHDB=" + lib, "GPUFLEET_BROKERS=" + broker.Addr, "GPUFLEET_METRICS_ADDR="}
	if r := run(t, env, "migrate", "--clickhouse", dsn); r.code != 0 {
		t.Fatalf("migrate: exit %d %s", r.code, r.stderr)
	}
	hint := "create them first with `gpufleet topics --brokers " + broker.Addr + "`"
	for _, c := range []struct {
		args    []string
		missing string
	}{
		{[]string{"simulate", "--gpus", "8", "--for", "1s"}, "topics gpu.samples, gpu.events do not exist"},
		{[]string{"simulate", "--gpus", "8", "--for", "1s", "--spool-dir", t.TempDir()}, "topics gpu.samples, gpu.events do not exist"},
		{[]string{"ingest", "--clickhouse", dsn}, "topics gpu.samples, gpu.events, gpu.dlq do not exist"},
	} {
		r := run(t, env, c.args...)
		if line := lastLine(r.stderr); r.code != 1 || !strings.Contains(line, c.missing) || !strings.Contains(line, hint) {
			t.Errorf("%v without topics: exit %d, last line %q; want 1 and %q ... %q", c.args, r.code, line, c.missing, hint)
		}
	}

	r := run(t, env, "topics", "--partitions", "2")
	want := []string{
		"gpu.samples: created, 2 partitions, replication factor 1, min.insync.replicas=1 max.message.bytes=1048588 retention.ms=604800000",
		"gpu.events: created, 2 partitions, replication factor 1, min.insync.replicas=1 max.message.bytes=1048588 retention.ms=604800000",
		"gpu.dlq: created, 1 partitions, replication factor 1, min.insync.replicas=1 max.message.bytes=16777216 retention.ms=2592000000",
	}
	if r.code != 0 || strings.TrimSpace(r.stdout) != strings.Join(want, "\n") {
		t.Fatalf("topics: exit %d\n%s\nwant\n%s\n%s", r.code, r.stdout, strings.Join(want, "\n"), r.stderr)
	}
	if !strings.Contains(r.stderr, "fewer than 3 brokers") {
		t.Errorf("topics on one broker does not warn about replication: %s", r.stderr)
	}
	r = run(t, env, "topics", "--partitions", "2")
	if again := strings.ReplaceAll(strings.Join(want, "\n"), "created", "exists"); r.code != 0 || strings.TrimSpace(r.stdout) != again {
		t.Errorf("topics again: exit %d\n%s\nwant\n%s", r.code, r.stdout, again)
	}
	if r := run(t, env, "simulate", "--gpus", "8", "--interval", "100ms", "--for", "1s"); r.code != 0 {
		t.Errorf("simulate with the topics: exit %d %s", r.code, r.stderr)
	}
}

// Bad security flags are usage errors naming the flag, before anything is dialled.
func TestKafkaSecurityFlags(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		env  []string
		args []string
		code int
		want string
	}{
		{nil, []string{"simulate", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "u", "--kafka-sasl-password-file", pw},
			2, "--kafka-sasl-mechanism: PLAIN sends the password in clear text: enable TLS (--kafka-tls)"},
		{nil, []string{"topics", "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-password-file", pw},
			2, "--kafka-sasl-user: empty: SASL SCRAM-SHA-512 needs a user name"},
		{nil, []string{"topics", "--kafka-sasl-mechanism", "gssapi", "--kafka-sasl-user", "u"},
			2, `--kafka-sasl-mechanism: "gssapi" is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`},
		{nil, []string{"simulate", "--kafka-sasl-mechanism", "scram-sha-256", "--kafka-sasl-user", "u"},
			2, "--kafka-sasl-password-file (or GPUFLEET_KAFKA_SASL_PASSWORD): empty"},
		{nil, []string{"topics", "--kafka-tls-cert", pw}, 2, "--kafka-tls-key: empty while --kafka-tls-cert is set"},
		{nil, []string{"topics", "--kafka-tls-ca", filepath.Join(t.TempDir(), "none.pem")}, 1, "--kafka-tls-ca: open "},
		{nil, []string{"topics", "--kafka-tls-ca", pw}, 1, "--kafka-tls-ca: " + pw + " holds no PEM certificate"},
		{[]string{"GPUFLEET_KAFKA_SASL_PASSWORD=x"}, []string{"topics"}, 2,
			"--kafka-sasl-password-file (or GPUFLEET_KAFKA_SASL_PASSWORD): set while --kafka-sasl-mechanism is empty"},
		{nil, []string{"topics", "--replication-factor", "2", "--min-insync-replicas", "3"}, 2, "--min-insync-replicas 3: above --replication-factor 2"},
		{nil, []string{"topics", "--retention", "1s"}, 2, "--retention 1s: must be at least 1m"},
	}
	for _, tt := range tests {
		r := run(t, tt.env, tt.args...)
		if line := lastLine(r.stderr); r.code != tt.code || !strings.Contains(line, tt.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", tt.args, r.code, line, tt.code, tt.want)
		}
	}
}

// Over SASL_SSL: the admin creates the topics, simulate streams as another user with a password
// file, and a wrong password or an untrusted CA stops simulate and ingest at once with one line
// naming the flag (their --connect-timeout of 10 minutes is never waited out: run gives up after 2).
func TestKafkaSecureCLI(t *testing.T) {
	b := testenv.NewSecureKafka(t)
	lib := testenv.LibCHDB(t)
	dsn := "chdb://" + t.TempDir()
	dir := t.TempDir()
	pwFile := func(name, pw string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	alice, wrong := pwFile("alice", b.Users["alice"]), pwFile("wrong", "not-the-password")
	env := []string{"GPUFLEET_LIBCHDB=" + lib, "GPUFLEET_BROKERS=" + b.Addr, "GPUFLEET_METRICS_ADDR=", "GPUFLEET_CONNECT_TIMEOUT=10m",
		"GPUFLEET_KAFKA_TLS_CA=" + b.CAFile, "GPUFLEET_KAFKA_TLS_CERT=" + b.CertFile, "GPUFLEET_KAFKA_TLS_KEY=" + b.KeyFile}
	if r := run(t, env, "migrate", "--clickhouse", dsn); r.code != 0 {
		t.Fatalf("migrate: exit %d %s", r.code, r.stderr)
	}
	admin := append(env, "GPUFLEET_KAFKA_SASL_MECHANISM=scram-sha-512", "GPUFLEET_KAFKA_SASL_USER="+b.AdminUser,
		"GPUFLEET_KAFKA_SASL_PASSWORD="+b.Users[b.AdminUser])
	r := run(t, admin, "topics", "--partitions", "2")
	if r.code != 0 || strings.Count(r.stdout, ": created,") != 3 {
		t.Fatalf("topics as admin: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "security=\"SASL_SSL SCRAM-SHA-512 user admin\"") {
		t.Errorf("the connection's security is not logged: %s", r.stderr)
	}
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		r := run(t, env, "simulate", "--gpus", "8", "--interval", "100ms", "--for", "1s", "--kafka-sasl-mechanism", mech,
			"--kafka-sasl-user", "alice", "--kafka-sasl-password-file", alice)
		if r.code != 0 || !strings.Contains(r.stderr, "stopped") {
			t.Errorf("simulate as alice with %s: exit %d %s", mech, r.code, r.stderr)
		}
	}
	refusals := []struct {
		args []string
		want string
	}{
		{[]string{"simulate", "--kafka-sasl-mechanism", "scram-sha-256", "--kafka-sasl-user", "alice", "--kafka-sasl-password-file", wrong},
			`gpufleet simulate: --kafka-sasl-password-file (or GPUFLEET_KAFKA_SASL_PASSWORD): the broker refused user "alice" with SCRAM-SHA-256: wrong user name or password`},
		{[]string{"simulate", "--spool-dir", t.TempDir(), "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "alice", "--kafka-sasl-password-file", wrong},
			`gpufleet simulate: --kafka-sasl-password-file (or GPUFLEET_KAFKA_SASL_PASSWORD): the broker refused user "alice" with PLAIN`},
		{[]string{"ingest", "--clickhouse", dsn, "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-user", "alice", "--kafka-sasl-password-file", wrong},
			`gpufleet ingest: --kafka-sasl-password-file (or GPUFLEET_KAFKA_SASL_PASSWORD): the broker refused user "alice" with SCRAM-SHA-512`},
		{[]string{"ingest", "--clickhouse", dsn, "--kafka-tls-ca", b.OtherCAFile, "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-user", "alice",
			"--kafka-sasl-password-file", alice}, "gpufleet ingest: --kafka-tls-ca: the broker's certificate"},
		{[]string{"topics", "--kafka-tls-server-name", "elsewhere.test", "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-user", "alice",
			"--kafka-sasl-password-file", alice}, `gpufleet topics: --kafka-tls-server-name: the broker's certificate is not valid for "elsewhere.test"`},
	}
	for _, c := range refusals {
		r := run(t, env, c.args...)
		line := lastLine(r.stderr)
		if r.code != 1 || !strings.HasPrefix(line, c.want) {
			t.Errorf("%v: exit %d, last line\n%q\nwant 1 and\n%q", c.args, r.code, line, c.want)
		}
		if strings.Contains(r.stderr, "not-the-password") || strings.Contains(r.stderr, b.Users["alice"]) {
			t.Errorf("%v: a password in the output:\n%s", c.args, r.stderr)
		}
	}
}
