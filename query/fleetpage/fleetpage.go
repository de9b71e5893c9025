// Package fleetpage is the small fleet-health page `gpufleet api` and `demo` serve at /: GPUs by
// health state, the drain list with the action for each GPU, recent XIDs with what NVIDIA's Xid
// catalog says of them, and live fleet utilisation and power. Plain HTML, CSS and JavaScript
// embedded in the binary, no build step; the page reads the same /api/v1 routes as every other
// client, so it shows nothing the API would not.
package fleetpage

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Paths are the page's own files, which carry no fleet data and are served without the API's
// token (the page asks for it, and sends it with each API call).
var Paths = []string{"/", "/fleet/app.js", "/fleet/style.css"}

// Handler serves the page: / is index.html, /fleet/ its script and style. Any other path is a
// 404, so that the page cannot shadow an API route or serve a directory listing.
func Handler() http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	serve := map[string]string{"/": "index.html", "/fleet/app.js": "app.js", "/fleet/style.css": "style.css"}
	types := map[string]string{"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := serve[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := fs.ReadFile(files, name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", types[name])
		// Scripts only from this origin and never inline, no framing: fleet labels come from
		// agents, and the page writes them as text, but the policy holds even if that slipped.
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	})
}
