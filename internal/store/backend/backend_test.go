package backend

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		dsn     string
		want    Target // DSN is filled in from dsn
		wantErr string
	}{
		{dsn: "clickhouse://u:p@h:9000/db", want: Target{Scheme: "clickhouse", Database: "db"}},
		{dsn: "clickhouse://h:9000", want: Target{Scheme: "clickhouse", Database: DefaultDatabase}},
		{dsn: "clickhouse://h:9000/", want: Target{Scheme: "clickhouse", Database: "gpufleet"}},
		{dsn: "clickhouse://h1:9000,h2:9000/metrics_1", want: Target{Scheme: "clickhouse", Database: "metrics_1"}},
		{dsn: "clickhouse:///db", wantErr: "names no host"},
		{dsn: "chdb:///abs/dir", want: Target{Scheme: "chdb", Dir: "/abs/dir", Database: "gpufleet"}},
		{dsn: "chdb://rel/dir", want: Target{Scheme: "chdb", Dir: "rel/dir", Database: "gpufleet"}},
		{dsn: "chdb://rel", want: Target{Scheme: "chdb", Dir: "rel", Database: "gpufleet"}},
		{dsn: "chdb:///d?database=x", want: Target{Scheme: "chdb", Dir: "/d", Database: "x"}},
		{dsn: "chdb:///d?database=", want: Target{Scheme: "chdb", Dir: "/d", Database: "gpufleet"}},
		{dsn: "chdb://", wantErr: "names no data directory"},
		{dsn: "chdb:///d?database=a-b", wantErr: "letters, digits and underscore"},
		{dsn: "mysql://x", wantErr: `unsupported scheme "mysql"`},
		{dsn: "not a url", wantErr: "is not a URL"},
		{dsn: "", wantErr: "clickhouse DSN is empty"},
		{dsn: "://h/db", wantErr: "is not a URL"},
		{dsn: "clickhouse://h:9000/my-db", wantErr: "letters, digits and underscore"},
		{dsn: "clickhouse://h:9000/1db", wantErr: "letters, digits and underscore"},
		{dsn: "clickhouse://h:9000/a;DROP", wantErr: "letters, digits and underscore"},
		{dsn: "clickhouse://h:9000/db/sub", wantErr: "letters, digits and underscore"},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			got, err := Parse(tt.dsn)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse(%q) = %+v, want error containing %q", tt.dsn, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error %q does not contain %q", tt.dsn, err, tt.wantErr)
				}
				if got != (Target{}) {
					t.Errorf("Parse(%q) returned %+v along with the error, want zero Target", tt.dsn, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.dsn, err)
			}
			want := tt.want
			want.DSN = tt.dsn
			if got != want {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.dsn, got, want)
			}
		})
	}
}

// Every error says which forms are accepted, so a user can fix the flag without reading docs, and
// shows the DSN as Redact does.
func TestParseErrorsShowHelp(t *testing.T) {
	for _, dsn := range []string{"clickhouse:///db", "chdb://", "mysql://x", "not a url"} {
		_, err := Parse(dsn)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", dsn)
		}
		if !strings.Contains(err.Error(), dsnHelp) {
			t.Errorf("Parse(%q) error %q lacks the help text", dsn, err)
		}
		if r := Redact(dsn); r != "<unparsable DSN>" && !strings.Contains(err.Error(), r) {
			t.Errorf("Parse(%q) error %q lacks the DSN %q", dsn, err, r)
		}
	}
}

// Library errors name the field, not a CLI flag: the CLI adds its flag.
func TestParseErrorsNameTheField(t *testing.T) {
	for _, dsn := range []string{"", "clickhouse:///db", "chdb://", "mysql://x", "not a url", "clickhouse://h/a-b"} {
		_, err := Parse(dsn)
		if err == nil || strings.Contains(err.Error(), "--") || !strings.Contains(err.Error(), "clickhouse DSN") {
			t.Errorf("Parse(%q) error %q: want it to name the clickhouse DSN and no flag", dsn, err)
		}
	}
}

// hostileDSNs hold a secret in every place a DSN can hide one; none may appear in Parse's error,
// in Redact, or in a log line that names the DSN.
var hostileDSNs = []struct{ dsn, secret string }{
	{"clickhous://u:S3cr3tPw@127.0.0.1:9000/db", "S3cr3tPw"},
	{"clickhouse://u:S3cr3tPw@h:9000/a-b", "S3cr3tPw"},
	{"clickhouse://u:S3cr3tPw@h:9000/db", "S3cr3tPw"},
	{"clickhouse://h:9000/db?password=S3cr3tPw", "S3cr3tPw"},
	{"clickhouse://h:9000/db?PassWord=S3cr3tPw&secure=true", "S3cr3tPw"},
	{"clickhouse://h:9000/db?pass%77ord=S3cr3tPw", "S3cr3tPw"},
	{"mysql://h:9000/db?password=S3cr3tPw", "S3cr3tPw"},
	{"chdb:///data?database=a-b&password=S3cr3tPw", "S3cr3tPw"},
	{"chdb:///data?token=S3cr3tPw", "S3cr3tPw"},
	{"clickhouse://u:S3cr3t%2FPw@h:9000/db", "S3cr3t"},
	{"clickhouse://u:%53%33cr3tPw@h:9000/db", "S3cr3tPw"},
	{"clickhouse://u:S3cr/3tPw@h:9000/db", "3tPw"},
	{"clickhouse://u:S3cr/3tPw@h:9000/db", "S3cr"},
	{"clickhouse://u:12/S3cr3tPw@h:9000/db", "S3cr3tPw"},
	{"clickhouse://u:12?S3cr3tPw@h:9000/db", "S3cr3tPw"},
	{"clickhouse://u:12#S3cr3tPw@h:9000/db", "S3cr3tPw"},
	{"clickhouse://u:S3cr3tPw@h:9000/db#x", "S3cr3tPw"},
	{"clickhouse://u:pässwörd-S3cr3t@h:9000/db", "S3cr3t"},
	{"clickhouse://u:pässwörd-S3cr3t@h:9000/db", "pässwörd"},
	{"clickhouse://u:S3cr3tPw@h:notaport/db", "S3cr3tPw"},
	{"clickhouse://u:S3cr3tPw@[::1/db", "S3cr3tPw"},
	{"clickhouse://u:S3cr3tPw@h:9000/db\x00", "S3cr3tPw"},
	{"clickhouse://u:S3cr3tPw@h:9000/db\n", "S3cr3tPw"},
	{"clickhouse:u:S3cr3tPw@h:9000", "S3cr3tPw"},
	{"u:S3cr3tPw@h:9000/db", "S3cr3tPw"},
	{"S3cr3tPw", "S3cr3tPw"},
	{"clickhouse://h/db?http_proxy=http%3A%2F%2Fp%3AS3cr3tPw%40proxy%3A3128", "S3cr3tPw"},
}

func TestParseAndLogNeverShowSecrets(t *testing.T) {
	for _, c := range hostileDSNs {
		t.Run(c.dsn, func(t *testing.T) {
			var logged bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logged, nil))
			_, err := Parse(c.dsn)
			if err != nil {
				log.Error("open the store", slog.Any("err", err), slog.String("clickhouse", Redact(c.dsn)))
			} else {
				log.Info("serving", slog.String("clickhouse", Redact(c.dsn)))
			}
			jlog := slog.New(slog.NewJSONHandler(&logged, nil))
			jlog.Info("serving", slog.String("clickhouse", Redact(c.dsn)), slog.Any("err", err))
			if strings.Contains(logged.String(), c.secret) {
				t.Errorf("the secret %q shows in:\n%s", c.secret, logged.String())
			}
			if err != nil && strings.Contains(err.Error(), c.secret) {
				t.Errorf("Parse error shows %q: %v", c.secret, err)
			}
		})
	}
}

// A DSN whose password holds an unescaped '/', '?', '#' or '@' is refused with how to fix it:
// net/url and the driver would each read another host, database or password from it.
func TestParseRefusesAmbiguousPasswords(t *testing.T) {
	for _, dsn := range []string{
		"clickhouse://u:12/S3cr3tPw@h:9000/db",
		"clickhouse://u:12?S3cr3tPw@h:9000/db",
		"clickhouse://u:12#S3cr3tPw@h:9000/db",
		"clickhouse://u:S3cr@3tPw@h:9000/db/x@y",
	} {
		_, err := Parse(dsn)
		if err == nil || !strings.Contains(err.Error(), "percent-encode") {
			t.Errorf("Parse(%q) = %v, want it refused with how to percent-encode", dsn, err)
		}
	}
	if _, err := Parse("clickhouse://u:S3cr%2F3tPw@h:9000/db"); err != nil {
		t.Errorf("an encoded password is refused: %v", err)
	}
}
