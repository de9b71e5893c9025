package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query/httpapi"
)

// The hostile statements through /api/v1/sql, by GET, POST text and POST JSON: each refused one is
// a 400, each harmless one a 200, and nothing changes.
func TestSQLHostile(t *testing.T) {
	w := testenv.CHDB(t)
	if _, err := migrate.Apply(context.Background(), w, nil); err != nil {
		t.Fatal(err)
	}
	rd, err := chdb.OpenReader(testenv.DataDir(t), w.Database(), testenv.LibCHDB(t), store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	srv := httptest.NewServer(httpapi.Handler(rd, time.Now))
	defer srv.Close()
	dir := testenv.CanaryDir(t)
	before := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t))
	send := []struct {
		name string
		do   func(sql string) (*http.Response, error)
	}{
		{"GET", func(sql string) (*http.Response, error) {
			return http.Get(srv.URL + "/api/v1/sql?since=1h&sql=" + url.QueryEscape(sql))
		}},
		{"POST text", func(sql string) (*http.Response, error) {
			return http.Post(srv.URL+"/api/v1/sql", "text/plain", strings.NewReader(sql))
		}},
		{"POST JSON", func(sql string) (*http.Response, error) {
			b, _ := json.Marshal(map[string]string{"sql": sql})
			return http.Post(srv.URL+"/api/v1/sql", "application/json", strings.NewReader(string(b)))
		}},
	}
	for _, c := range testenv.HostileSQL(t, w.Database(), dir) {
		for _, s := range send {
			resp, err := s.do(c.SQL)
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			want := http.StatusOK
			if c.Refuse {
				want = http.StatusBadRequest
			}
			if resp.StatusCode != want {
				t.Errorf("%s %q: status %d (%v), want %d", s.name, c.SQL, resp.StatusCode, body, want)
			}
			if after := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t)); after != before {
				t.Fatalf("after %s %q:\n%s\nwas\n%s", s.name, c.SQL, after, before)
			}
		}
	}
	resp, err := http.Post(srv.URL+"/api/v1/sql", "text/plain", strings.NewReader(strings.Repeat(" ", 300<<10)+"SELECT 1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a 300 KiB statement: status %d, want 400", resp.StatusCode)
	}
}
