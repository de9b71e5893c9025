package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// /readyz is 503 with the reason until the command says it is ready, and while its check fails.
func TestReadyz(t *testing.T) {
	t.Cleanup(func() { daemonReady = readyState{} })
	cases := []struct {
		name string
		set  func()
		code int
		body string
	}{
		{"before the command says", func() {}, http.StatusServiceUnavailable, "not ready: starting\n"},
		{"check failing", func() { setReadyCheck(func() error { return errors.New("worker 0 has not joined") }) },
			http.StatusServiceUnavailable, "not ready: worker 0 has not joined\n"},
		{"check passing", func() { setReadyCheck(func() error { return nil }) }, http.StatusOK, "ready\n"},
		{"marked ready", markReady, http.StatusOK, "ready\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			daemonReady = readyState{}
			c.set()
			w := httptest.NewRecorder()
			daemonReady.serve(w, httptest.NewRequest("GET", "/readyz", nil))
			if w.Code != c.code || w.Body.String() != c.body {
				t.Errorf("%d %q; want %d %q", w.Code, w.Body.String(), c.code, c.body)
			}
		})
	}
}
