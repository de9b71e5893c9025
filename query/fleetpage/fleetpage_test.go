package fleetpage_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/query/fleetpage"
)

// The page's files are served with their types and a policy that allows no inline or foreign
// script; everything else is a 404, so the page cannot shadow another route or list a directory.
func TestHandler(t *testing.T) {
	h := fleetpage.Handler()
	for _, tc := range []struct {
		method, path string
		code         int
		ctype, body  string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="/fleet/app.js" defer></script>`},
		{"HEAD", "/", 200, "text/html; charset=utf-8", ""},
		{"GET", "/fleet/app.js", 200, "text/javascript; charset=utf-8", "textContent"},
		{"GET", "/fleet/style.css", 200, "text/css; charset=utf-8", ".card"},
		{"GET", "/fleet/", 404, "", ""},
		{"GET", "/static/app.js", 404, "", ""},
		{"GET", "/index.html", 404, "", ""},
		{"GET", "/../../etc/passwd", 404, "", ""},
		{"GET", "/api/v2/anything", 404, "", ""},
		{"POST", "/", 405, "", ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.code)
			continue
		}
		if tc.code != 200 {
			continue
		}
		if got := rec.Header().Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s %s: Content-Type %q, want %q", tc.method, tc.path, got, tc.ctype)
		}
		csp := rec.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", tc.path, csp)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tc.path)
		}
		if !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s: body lacks %q", tc.path, tc.body)
		}
	}
	// Paths (served without the API token) are exactly the files served.
	for _, p := range fleetpage.Paths {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("Paths lists %s, which is a %d", p, rec.Code)
		}
	}
}

// The script writes fleet values as text: no innerHTML, insertAdjacentHTML, document.write or
// eval anywhere in it (the browser test shows a markup label rendered as text).
func TestScriptWritesNoMarkup(t *testing.T) {
	rec := httptest.NewRecorder()
	fleetpage.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/fleet/app.js", nil))
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"} {
		if strings.Contains(rec.Body.String(), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}
