package kafka

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	kafkago "github.com/segmentio/kafka-go"
)

func TestValidate(t *testing.T) {
	tlsOn := TLS{Enable: true}
	tests := []struct {
		name    string
		c       Config
		setting string // "" : valid
	}{
		{name: "plaintext", c: Config{}},
		{name: "tls system roots", c: Config{TLS: tlsOn}},
		{name: "tls everything", c: Config{TLS: TLS{Enable: true, CAFile: "ca", CertFile: "c", KeyFile: "k", ServerName: "kafka"}}},
		{name: "scram without tls", c: Config{SASL: SASL{Mechanism: "scram-sha-512", Username: "u", Password: "p"}}},
		{name: "plain with tls", c: Config{TLS: tlsOn, SASL: SASL{Mechanism: "PLAIN", Username: "u", PasswordFile: "f"}}},
		{name: "plain without tls", c: Config{SASL: SASL{Mechanism: "plain", Username: "u", Password: "p"}}, setting: "SASL.Mechanism"},
		{name: "ca without tls", c: Config{TLS: TLS{CAFile: "ca"}}, setting: "TLS.CAFile"},
		{name: "skip verify without tls", c: Config{TLS: TLS{InsecureSkipVerify: true}}, setting: "TLS.InsecureSkipVerify"},
		{name: "cert without key", c: Config{TLS: TLS{Enable: true, CertFile: "c"}}, setting: "TLS.KeyFile"},
		{name: "key without cert", c: Config{TLS: TLS{Enable: true, KeyFile: "k"}}, setting: "TLS.CertFile"},
		{name: "unknown mechanism", c: Config{TLS: tlsOn, SASL: SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}}, setting: "SASL.Mechanism"},
		{name: "no user", c: Config{SASL: SASL{Mechanism: ScramSHA256, Password: "p"}}, setting: "SASL.Username"},
		{name: "no password", c: Config{SASL: SASL{Mechanism: ScramSHA256, Username: "u"}}, setting: "SASL.Password"},
		{name: "two passwords", c: Config{SASL: SASL{Mechanism: ScramSHA256, Username: "u", Password: "p", PasswordFile: "f"}}, setting: "SASL.PasswordFile"},
		{name: "user without mechanism", c: Config{SASL: SASL{Username: "u"}}, setting: "SASL.Username"},
		{name: "password without mechanism", c: Config{SASL: SASL{Password: "p"}}, setting: "SASL.Password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.setting == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var serr *SettingError
			if !errors.As(err, &serr) || serr.Setting != tt.setting {
				t.Fatalf("Validate = %v, want a SettingError on %s", err, tt.setting)
			}
			if !strings.HasPrefix(err.Error(), tt.setting+": ") {
				t.Errorf("error %q does not start with the setting", err)
			}
		})
	}
}

func TestBuildFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM, empty := write("not.pem", "hello"), write("empty", "\n")
	tests := []struct {
		name    string
		c       Config
		setting string
	}{
		{name: "plaintext is nil", c: Config{}},
		{name: "missing CA", c: Config{TLS: TLS{Enable: true, CAFile: filepath.Join(dir, "nope")}}, setting: "TLS.CAFile"},
		{name: "CA not PEM", c: Config{TLS: TLS{Enable: true, CAFile: notPEM}}, setting: "TLS.CAFile"},
		{name: "bad key pair", c: Config{TLS: TLS{Enable: true, CertFile: notPEM, KeyFile: notPEM}}, setting: "TLS.CertFile"},
		{name: "missing password file", c: Config{SASL: SASL{Mechanism: ScramSHA512, Username: "u", PasswordFile: filepath.Join(dir, "nope")}},
			setting: "SASL.PasswordFile"},
		{name: "empty password file", c: Config{SASL: SASL{Mechanism: ScramSHA512, Username: "u", PasswordFile: empty}}, setting: "SASL.PasswordFile"},
		{name: "scram", c: Config{SASL: SASL{Mechanism: ScramSHA512, Username: "u", Password: "p"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tt.c.Build()
			if tt.setting == "" {
				if err != nil {
					t.Fatal(err)
				}
				if (conn == nil) != !tt.c.Enabled() {
					t.Errorf("Build = %v for a config enabled=%v", conn, tt.c.Enabled())
				}
				if conn != nil && (conn.Dialer().SASLMechanism == nil || conn.Transport() == nil) {
					t.Error("the SASL mechanism is not in the dialer or transport")
				}
				return
			}
			var serr *SettingError
			if !errors.As(err, &serr) || serr.Setting != tt.setting {
				t.Fatalf("Build = %v, want a SettingError on %s", err, tt.setting)
			}
		})
	}
	// A plaintext Conn leaves kafka-go's fields nil, so kafka-go takes its defaults.
	var plain *Conn
	if plain.Dialer() != nil || plain.Transport() != nil {
		t.Error("a nil Conn gives a dialer or transport")
	}
}

// The password is in no log line, %v, or Config() of a built Conn.
func TestNoSecretShown(t *testing.T) {
	const secret = "s3cr3t-value"
	c := Config{TLS: TLS{Enable: true}, SASL: SASL{Mechanism: ScramSHA256, Username: "alice", Password: secret}}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("kafka", slog.Any("sasl", c.SASL), slog.Any("config", c))
	conn, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"log": buf.String(), "%v": fmt.Sprintf("%v %+v", c, c.SASL),
		"Conn.Config": fmt.Sprintf("%#v", conn.Config()), "Describe": c.Describe()} {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the password: %s", what, s)
		}
	}
	if got := c.Describe(); got != "SASL_SSL SCRAM-SHA-256 user alice" {
		t.Errorf("Describe = %q", got)
	}
}

// An ACL refusal becomes one line naming who, what and on which resource, as a SettingError on the
// setting that chose the principal (so callers stop rather than retry); other errors pass as they
// are, and the password never shows.
func TestDenied(t *testing.T) {
	const secret = "s3cr3t-value"
	sasl := &Conn{cfg: Config{TLS: TLS{Enable: true}, SASL: SASL{Mechanism: ScramSHA512, Username: "agent", Password: secret}}}
	cert := &Conn{cfg: Config{TLS: TLS{Enable: true, CertFile: "client.pem", KeyFile: "client.key"}}}
	tests := []struct {
		name              string
		conn              *Conn
		op, resource, hnt string
		err               error
		setting, want     string
	}{
		{"sasl user, topic", sasl, "Describe", "topic gpu.samples", "", kafkago.TopicAuthorizationFailed, "SASL.Username",
			`user "agent" may not Describe topic gpu.samples (Topic Authorization Failed): an admin grants it with Kafka ACLs (deploy/kafka/acls.sh)`},
		{"sasl user, wrapped, with a hint", sasl, "Create", "topic gpu.dlq", "run it as the admin", fmt.Errorf("create: %w", kafkago.ClusterAuthorizationFailed),
			"SASL.Username", `user "agent" may not Create topic gpu.dlq (Cluster Authorization Failed): run it as the admin`},
		{"group", sasl, "Read", "group g", "", kafkago.GroupAuthorizationFailed, "SASL.Username",
			`user "agent" may not Read group g (Group Authorization Failed): an admin grants it with Kafka ACLs (deploy/kafka/acls.sh)`},
		{"client certificate", cert, "Write", "topic gpu.events", "", kafkago.TopicAuthorizationFailed, "TLS.CertFile",
			"the client certificate's principal may not Write topic gpu.events (Topic Authorization Failed): an admin grants it with Kafka ACLs (deploy/kafka/acls.sh)"},
		{"anonymous", nil, "Describe", "topic gpu.samples", "", kafkago.TopicAuthorizationFailed, "SASL.Mechanism",
			"an anonymous client (no SASL user, no client certificate) may not Describe topic gpu.samples (Topic Authorization Failed): an admin grants it with Kafka ACLs (deploy/kafka/acls.sh)"},
		{"not an ACL refusal", sasl, "Describe", "topic gpu.samples", "", kafkago.LeaderNotAvailable, "", ""},
		{"nil", sasl, "Describe", "topic gpu.samples", "", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.conn.Denied(tt.op, tt.resource, tt.hnt, tt.err)
			if tt.setting == "" {
				if err != tt.err {
					t.Fatalf("Denied = %v, want %v unchanged", err, tt.err)
				}
				return
			}
			var serr *SettingError
			var aerr *AuthorizationError
			if !errors.As(err, &serr) || serr.Setting != tt.setting || !errors.As(err, &aerr) || !errors.Is(err, tt.err) {
				t.Fatalf("Denied = %#v, want a SettingError on %s wrapping an AuthorizationError and %v", err, tt.setting, tt.err)
			}
			if got := serr.Err.Error(); got != tt.want {
				t.Errorf("message\n%q\nwant\n%q", got, tt.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the password shows: %v", err)
			}
			// Denied twice says it once.
			if again := tt.conn.Denied("Write", "topic x", "", err); again != err {
				t.Errorf("Denied of a Denied error = %v", again)
			}
		})
	}
}
