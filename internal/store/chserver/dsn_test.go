package chserver

import (
	"context"
	"strings"
	"testing"
)

// Open's errors about a DSN never quote its password: not the driver's *url.Error (whose reason
// can hold part of a malformed password), not its parameter errors, not the connection error. The
// hosts are 127.0.0.1:1, so a DSN that parses fails at once on the connection.
func TestOpenErrorsNeverShowSecrets(t *testing.T) {
	cases := []struct {
		dsn     string
		secrets []string
		want    string // substring of the error
	}{
		{"clickhouse://u:S3cr3tPw@127.0.0.1:1/db", []string{"S3cr3tPw"}, "cannot reach ClickHouse"},
		{"clickhouse://127.0.0.1:1/db?password=S3cr3tPw", []string{"S3cr3tPw"}, "cannot reach ClickHouse"},
		{"clickhouse://u:S3cr/3tPw@127.0.0.1:1/db", []string{"S3cr", "3tPw"}, "clickhouse DSN"},
		{"clickhouse://u:S3c:r/3tPw@127.0.0.1:1/db", []string{"S3c", "r/3tPw", "3tPw"}, "clickhouse DSN"},
		{"clickhouse://u:S3cr3tPw@127.0.0.1:notaport/db", []string{"S3cr3tPw"}, "clickhouse DSN"},
		{"clickhouse://u:S3cr3tPw@[::1/db", []string{"S3cr3tPw"}, "clickhouse DSN"},
		{"clickhouse://u:S3cr3tPw@127.0.0.1:1/db\x7f\x00", []string{"S3cr3tPw"}, "clickhouse DSN"},
		{"clickhouse://u:pässwörd-S3cr3t@127.0.0.1:1/db?secure=maybe", []string{"pässwörd", "S3cr3t"}, "clickhouse DSN"},
		{"clickhouse://u:S3cr3tPw@127.0.0.1:1/db?secure=maybe", []string{"S3cr3tPw"}, `secure: strconv.ParseBool: parsing "maybe"`},
		{"clickhouse://u:S3cr3tPw@127.0.0.1:1/db?dial_timeout=S3cr3tPw", []string{"S3cr3tPw"}, "details not shown"},
		{"clickhouse://127.0.0.1:1/db?password=S3cr3tPw&compress_level=S3cr3tPw", []string{"S3cr3tPw"}, "details not shown"},
		{"clickhouse://127.0.0.1:1/db?password=S3cr3tPw&http_proxy=http://p:Pr0xyS3cret@%zz", []string{"S3cr3tPw", "Pr0xyS3cret"}, "clickhouse DSN"},
	}
	for _, c := range cases {
		t.Run(c.dsn, func(t *testing.T) {
			st, err := Open(context.Background(), c.dsn, nil)
			if err == nil {
				st.Close()
				t.Fatalf("Open(%q) succeeded", c.dsn)
			}
			for _, s := range c.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("Open(%q) error shows %q: %v", c.dsn, s, err)
				}
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open(%q) error %q lacks %q", c.dsn, err, c.want)
			}
			if strings.Contains(err.Error(), "--") {
				t.Errorf("Open(%q) error %q names a CLI flag", c.dsn, err)
			}
		})
	}
}
