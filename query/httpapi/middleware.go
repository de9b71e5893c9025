package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/store/backend/redact"
)

// ServeOptions configure Middleware. The zero value logs nothing and asks for no token.
type ServeOptions struct {
	// Token, when not empty, is the bearer token every request must carry
	// (Authorization: Bearer <Token>) except those for Public paths.
	Token string
	// Public are the paths served without the token: liveness probes, which reveal nothing.
	Public []string
	// Logger gets one access line per request, and the error of every 5xx; nil logs nothing.
	Logger *slog.Logger
	// Now is the clock request durations are measured with; nil is time.Now.
	Now func() time.Time
}

// errBodyLimit bounds how much of a 5xx body is kept to log its error.
const errBodyLimit = 4 << 10

// Middleware wraps h with bearer-token authentication and an access log. The log line names the
// method, the path, the query string with secret-like parameters masked, the status, the
// duration and the bytes written; never a header, so never the token. A 5xx is logged at error
// level with the error from its JSON body ({"error": "..."}). A panic in h is a logged 500.
func Middleware(h http.Handler, opts ServeOptions) http.Handler {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	var want [sha256.Size]byte
	if opts.Token != "" {
		want = sha256.Sum256([]byte(opts.Token))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			p := recover()
			if p != nil {
				if p == http.ErrAbortHandler { // net/http's way to abort a response: not an error
					panic(p)
				}
				rec.panicked = fmt.Sprint(p)
				rec.stack = string(debug.Stack())
				if rec.status == 0 {
					rec.Header().Set("Content-Type", "application/json")
					rec.WriteHeader(http.StatusInternalServerError)
					_ = json.NewEncoder(rec).Encode(map[string]string{"error": "internal error"})
				}
			}
			logRequest(opts.Logger, r, rec, now().Sub(start))
		}()
		if opts.Token != "" && !slices.Contains(opts.Public, r.URL.Path) && !authorized(r, want) {
			rec.Header().Set("WWW-Authenticate", `Bearer realm="gpufleet"`)
			rec.Header().Set("Content-Type", "application/json")
			rec.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(rec).Encode(map[string]string{"error": "missing or wrong bearer token (Authorization: Bearer <token>)"})
			return
		}
		h.ServeHTTP(rec, r)
	})
}

// authorized compares the request's bearer token with the wanted one in constant time: both are
// hashed first, so that neither the content nor the length of the token leaks through timing.
func authorized(r *http.Request, want [sha256.Size]byte) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

func logRequest(log *slog.Logger, r *http.Request, rec *recorder, d time.Duration) {
	if log == nil {
		return
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK // nothing written: net/http sends 200
	}
	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("query", redact.Query(r.URL.RawQuery)),
		slog.Int("status", status),
		slog.Duration("duration", d),
		slog.Int64("bytes", rec.bytes),
		slog.String("remote", r.RemoteAddr),
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
		attrs = append(attrs, slog.String("err", rec.errorText()))
		if rec.stack != "" {
			attrs = append(attrs, slog.String("stack", rec.stack))
		}
	}
	log.LogAttrs(r.Context(), level, "http request", attrs...)
}

// recorder notes what a handler writes: status, bytes, and the start of a 5xx body.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	errBody  bytes.Buffer
	panicked string
	stack    string
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 500 && w.errBody.Len() < errBodyLimit {
		w.errBody.Write(b[:min(len(b), errBodyLimit-w.errBody.Len())])
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's Flush and deadlines.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// errorText is the error a 5xx response carried: the panic, the "error" field of its JSON body,
// or the body itself.
func (w *recorder) errorText() string {
	if w.panicked != "" {
		return "panic: " + w.panicked
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(w.errBody.Bytes(), &body); err == nil && body.Error != "" {
		return body.Error
	}
	if w.errBody.Len() == 0 {
		return "(empty body)"
	}
	return strings.TrimSpace(w.errBody.String())
}
