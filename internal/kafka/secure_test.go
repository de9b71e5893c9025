package kafka_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// secure is a client config for b as user with mech, the password in a file.
func secure(t *testing.T, b *testenv.SecureBroker, mech, user, password string) kafka.Config {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return kafka.Config{
		TLS:  kafka.TLS{Enable: true, CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile},
		SASL: kafka.SASL{Mechanism: mech, Username: user, PasswordFile: pw},
	}
}

func build(t *testing.T, c kafka.Config) *kafka.Conn {
	t.Helper()
	conn, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// Agents produce and ingest consumes over SASL_SSL with each mechanism, through the same Conn the
// CLI builds: every sample the agent took is stored once, and the topic set-up ran as the admin.
func TestSecureProduceConsume(t *testing.T) {
	b := testenv.NewSecureKafka(t)
	brokers := []string{b.Addr}
	st := testenv.CHDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	adminConn := build(t, secure(t, b, kafka.ScramSHA512, b.AdminUser, b.Users[b.AdminUser]))
	admin := kafka.NewAdmin(brokers, adminConn)
	if err := admin.WaitReachable(ctx, time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	var stored uint64
	for i, mech := range []string{kafka.Plain, kafka.ScramSHA256, kafka.ScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			prefix := strings.ToLower(mech) + "."
			samples, events, dlq := prefix+"samples", prefix+"events", prefix+"dlq"
			if _, err := admin.EnsureTopics(ctx, []kafka.Topic{{Name: samples, Partitions: 2}, {Name: events, Partitions: 2},
				{Name: dlq, Partitions: 1}}); err != nil {
				t.Fatal(err)
			}
			conn := build(t, secure(t, b, mech, "alice", b.Users["alice"]))
			if err := kafka.NewAdmin(brokers, conn).CheckTopics(ctx, samples, events, dlq); err != nil {
				t.Fatal(err)
			}
			prod := kafka.NewProducerConn(brokers, conn)
			defer prod.Close()
			ag, err := agent.New(agent.Config{Sources: []agent.Source{sim.NewNode(3, "secure", i, 4)}, Sender: prod,
				Interval: 50 * time.Millisecond, SamplesTopic: samples, EventsTopic: events})
			if err != nil {
				t.Fatal(err)
			}
			agentCtx, stopAgent := context.WithTimeout(ctx, time.Second)
			defer stopAgent()
			if err := ag.Run(agentCtx); err != nil {
				t.Fatalf("agent: %v", err)
			}
			want := ag.Stats().Samples
			if want == 0 {
				t.Fatal("the agent took no samples")
			}
			// Garbage, for ingest's dead-letter writer to send over the same connection settings.
			if err := prod.Send(ctx, []wire.Message{{Topic: samples, Key: []byte("bad"), Value: []byte("not protobuf \xff")}}); err != nil {
				t.Fatal(err)
			}
			in, err := ingest.New(ingest.Config{Brokers: brokers, Kafka: conn, Store: st, GroupID: prefix + "group",
				SamplesTopic: samples, EventsTopic: events, DLQTopic: dlq, BatchAge: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ingestCtx, stopIngest := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- in.Run(ingestCtx) }()
			for (in.Stats().Samples < want || in.Stats().DLQ < 1) && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
			stopIngest()
			if err := <-done; err != nil {
				t.Fatalf("ingest: %v", err)
			}
			stored += want
			r, err := st.Query(ctx, "SELECT count() FROM "+store.Table(st.Database(), "gpu_samples"))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Rows[0][0].(uint64); got != stored {
				t.Errorf("gpu_samples has %d rows, the agents took %d", got, stored)
			}
			if got := in.Stats().DLQ; got != 1 {
				t.Errorf("%d dead letters, want the one garbage message", got)
			}
		})
	}
}

// A refused setting is one error naming it, returned at once rather than retried until the
// connect timeout (an hour here: reaching it would fail the test by its own deadline).
func TestSecureRefusals(t *testing.T) {
	b := testenv.NewSecureKafka(t)
	brokers := []string{b.Addr}
	good := func(t *testing.T) kafka.Config {
		return secure(t, b, kafka.ScramSHA512, "alice", b.Users["alice"])
	}
	tests := []struct {
		name    string
		edit    func(*kafka.Config)
		setting string
		want    string
	}{
		{name: "wrong password scram-sha-512", edit: func(c *kafka.Config) { c.SASL.PasswordFile, c.SASL.Password = "", "not-the-password" },
			setting: "SASL.Password", want: `the broker refused user "alice" with SCRAM-SHA-512: wrong user name or password`},
		{name: "wrong password scram-sha-256", edit: func(c *kafka.Config) {
			c.SASL.Mechanism, c.SASL.PasswordFile, c.SASL.Password = kafka.ScramSHA256, "", "nope"
		}, setting: "SASL.Password", want: "wrong user name or password"},
		{name: "wrong password plain", edit: func(c *kafka.Config) {
			c.SASL.Mechanism, c.SASL.PasswordFile, c.SASL.Password = kafka.Plain, "", "nope"
		}, setting: "SASL.Password", want: "wrong user name or password"},
		{name: "unknown user", edit: func(c *kafka.Config) { c.SASL.Username = "mallory" },
			setting: "SASL.Password", want: `refused user "mallory"`},
		{name: "untrusted CA", edit: func(c *kafka.Config) { c.TLS.CAFile = b.OtherCAFile },
			setting: "TLS.CAFile", want: "is not signed by a CA in " + b.OtherCAFile},
		{name: "system roots", edit: func(c *kafka.Config) { c.TLS.CAFile = "" },
			setting: "TLS.CAFile", want: "not signed by a CA in the system's CAs"},
		{name: "wrong server name", edit: func(c *kafka.Config) { c.TLS.ServerName = "kafka.elsewhere.test" },
			setting: "TLS.ServerName", want: `not valid for "kafka.elsewhere.test"`},
		{name: "no client certificate", edit: func(c *kafka.Config) { c.TLS.CertFile, c.TLS.KeyFile = "", "" },
			setting: "TLS.CertFile", want: "it may require a client certificate"},
		{name: "client certificate of another CA", edit: func(c *kafka.Config) { c.TLS.CertFile, c.TLS.KeyFile = b.OtherCertFile, b.OtherKeyFile },
			setting: "TLS.CertFile", want: "signed by a CA the broker trusts"},
		{name: "plaintext client", edit: func(c *kafka.Config) { *c = kafka.Config{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good(t)
			tt.edit(&c)
			conn := build(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if tt.setting == "" {
				// Plaintext on a TLS listener looks like a broker that hangs up: retried, then
				// explained with a hint. The short timeout keeps the test short.
				err := kafka.NewAdmin(brokers, conn).WaitReachable(ctx, 2*time.Second, nil)
				if err == nil || !strings.Contains(err.Error(), "may want TLS or SASL") {
					t.Fatalf("plaintext on SASL_SSL: %v", err)
				}
				return
			}
			err := kafka.NewAdmin(brokers, conn).WaitReachable(ctx, time.Hour, nil)
			var serr *kafka.SettingError
			if !errors.As(err, &serr) {
				t.Fatalf("got %v, want a SettingError on %s", err, tt.setting)
			}
			if serr.Setting != tt.setting || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q on %s, want %s: ...%s...", err, serr.Setting, tt.setting, tt.want)
			}
			if strings.Contains(err.Error(), b.Users["alice"]) || strings.Contains(err.Error(), "not-the-password") {
				t.Errorf("the error shows a password: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("not one line: %q", err)
			}
		})
	}
	// The same refusal reaches a writer (the agent's producer, ingest's dead letters) and is
	// explained the same way.
	t.Run("writer", func(t *testing.T) {
		c := good(t)
		c.SASL.PasswordFile, c.SASL.Password = "", "wrong"
		conn := build(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		w := &kafkago.Writer{Addr: kafkago.TCP(b.Addr), Transport: conn.Transport(), Topic: "x", MaxAttempts: 1}
		defer w.Close()
		err := w.WriteMessages(ctx, kafkago.Message{Value: []byte("v")})
		var serr *kafka.SettingError
		if !errors.As(conn.Explain(err), &serr) || serr.Setting != "SASL.Password" {
			t.Errorf("writer with a wrong password: %v, explained %v", err, conn.Explain(err))
		}
	})
}
