package backend

import (
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
		{dsn: "", wantErr: "is not a URL"},
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

// Every error says which forms are accepted, so a user can fix the flag without reading docs.
func TestParseErrorsShowHelp(t *testing.T) {
	for _, dsn := range []string{"clickhouse:///db", "chdb://", "mysql://x", "not a url"} {
		_, err := Parse(dsn)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", dsn)
		}
		if !strings.Contains(err.Error(), dsnHelp) || !strings.Contains(err.Error(), dsn) {
			t.Errorf("Parse(%q) error %q lacks the DSN or the help text", dsn, err)
		}
	}
}
