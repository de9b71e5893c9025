package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/query/httpapi"
)

const token = "t0ken-S3cret-4d1f0e2b9a"

// routes stands for the API: a JSON answer, a 502 with its error, a panic, and liveness.
func routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/summary", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"gpus":16}`+"\n")
	})
	mux.HandleFunc("GET /api/v1/broken", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, `{"error":"clickhouse query: code: 60, UNKNOWN_TABLE"}`+"\n")
	})
	mux.HandleFunc("GET /api/v1/panics", func(w http.ResponseWriter, r *http.Request) {
		var m map[string]int
		m["x"]++ // a nil map: a bug, not an input problem
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return mux
}

// fixedClock advances by 250ms each call, so that every request takes exactly that long.
func fixedClock() func() time.Time {
	t := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(250 * time.Millisecond); return t }
}

type logLine struct {
	Level    string  `json:"level"`
	Msg      string  `json:"msg"`
	Method   string  `json:"method"`
	Path     string  `json:"path"`
	Query    string  `json:"query"`
	Status   int     `json:"status"`
	Duration float64 `json:"duration"` // nanoseconds
	Bytes    int64   `json:"bytes"`
	Err      string  `json:"err"`
}

func TestMiddlewareToken(t *testing.T) {
	var logs bytes.Buffer
	h := httpapi.Middleware(routes(), httpapi.ServeOptions{Token: token, Public: []string{"/healthz"},
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: fixedClock()})
	cases := []struct {
		name, path, auth string
		code             int
	}{
		{"no header", "/api/v1/summary", "", 401},
		{"right token", "/api/v1/summary", "Bearer " + token, 200},
		{"scheme is case-insensitive", "/api/v1/summary", "bearer " + token, 200},
		{"wrong token", "/api/v1/summary", "Bearer " + token + "x", 401},
		{"a prefix of the token", "/api/v1/summary", "Bearer " + token[:len(token)-1], 401},
		{"empty token", "/api/v1/summary", "Bearer ", 401},
		{"basic auth", "/api/v1/summary", "Basic " + token, 401},
		{"token without scheme", "/api/v1/summary", token, 401},
		{"token in the query is not enough", "/api/v1/summary?access_token=" + token, "", 401},
		{"unknown path needs the token too", "/api/v1/nope", "", 401},
		{"unknown path with the token", "/api/v1/nope", "Bearer " + token, 404},
		{"metrics-like path needs it", "/metrics", "", 401},
		{"liveness is public", "/healthz", "", 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", c.path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != c.code {
				t.Fatalf("%s: %d %s, want %d", c.path, rec.Code, rec.Body, c.code)
			}
			if c.code == 401 {
				if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") {
					t.Errorf("401 with WWW-Authenticate %q, want a Bearer challenge", got)
				}
				if !json.Valid(rec.Body.Bytes()) || !strings.Contains(rec.Body.String(), "bearer token") {
					t.Errorf("401 body %q: want a JSON error naming the bearer token", rec.Body)
				}
			}
		})
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), token[:len(token)-1]) {
		t.Errorf("the token shows in the access log:\n%s", logs.String())
	}
	if n := strings.Count(logs.String(), `"msg":"http request"`); n != len(cases) {
		t.Errorf("%d access lines for %d requests:\n%s", n, len(cases), logs.String())
	}
}

func TestMiddlewareWithoutTokenServesAll(t *testing.T) {
	h := httpapi.Middleware(routes(), httpapi.ServeOptions{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/summary", nil))
	if rec.Code != 200 || rec.Body.String() != `{"gpus":16}`+"\n" {
		t.Errorf("%d %q", rec.Code, rec.Body)
	}
}

// One line per request with method, path, masked query, status, duration and bytes; a 5xx at
// error level with its error; a panic a 500, logged, and the server goes on.
func TestMiddlewareAccessLog(t *testing.T) {
	var logs bytes.Buffer
	h := httpapi.Middleware(routes(), httpapi.ServeOptions{Token: token,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Now: fixedClock()})
	do := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	do("/api/v1/summary?since=1h&password=Hunter2pw&api_key=K3yK3yK3y")
	do("/api/v1/broken?since=1h")
	if rec := do("/api/v1/panics"); rec.Code != 500 || !json.Valid(rec.Body.Bytes()) {
		t.Errorf("panic: %d %q, want a JSON 500", rec.Code, rec.Body)
	}
	var lines []logLine
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, ll)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), logs.String())
	}
	want := []logLine{
		{Level: "INFO", Msg: "http request", Method: "GET", Path: "/api/v1/summary", Query: "since=1h&password=xxxxx&api_key=xxxxx",
			Status: 200, Duration: 250e6, Bytes: int64(len(`{"gpus":16}` + "\n"))},
		{Level: "ERROR", Msg: "http request", Method: "GET", Path: "/api/v1/broken", Query: "since=1h",
			Status: 502, Duration: 250e6, Bytes: int64(len(`{"error":"clickhouse query: code: 60, UNKNOWN_TABLE"}` + "\n")),
			Err: "clickhouse query: code: 60, UNKNOWN_TABLE"},
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d:\n got %+v\nwant %+v", i, lines[i], w)
		}
	}
	if p := lines[2]; p.Level != "ERROR" || p.Status != 500 || !strings.Contains(p.Err, "panic: assignment to entry in nil map") {
		t.Errorf("panic line %+v", p)
	}
	for _, secret := range []string{token, "Hunter2pw", "K3yK3yK3y"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("%q shows in the access log:\n%s", secret, logs.String())
		}
	}
}

// BenchmarkMiddleware prints what the token check and the access line add to a request.
func BenchmarkMiddleware(b *testing.B) {
	for _, c := range []struct {
		name string
		h    http.Handler
	}{
		{"bare", routes()},
		{"token+log", httpapi.Middleware(routes(), httpapi.ServeOptions{Token: token, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))})},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/api/v1/summary?since=1h", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			for b.Loop() {
				c.h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
