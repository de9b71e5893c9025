package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/query"
)

// maxSQLBytes bounds a statement; a dashboard's statement is a few KiB.
const maxSQLBytes = 256 << 10

// sql runs one SELECT with the raw-SQL macros over the request's window: GET ?sql=…, or POST with
// the statement as the body (text/plain) or as {"sql": "…"} (application/json). step= sets
// $__interval_s. query.RunSQL decides on the engine's parse what may run, on the API's read-only
// store.
func (a *api) sql(w http.ResponseWriter, r *http.Request) {
	p := &params{r: r}
	from, to := p.window(a.now(), time.Hour)
	step := p.dur("step", time.Minute)
	stmt := r.URL.Query().Get("sql")
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSQLBytes))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			p.fail(bad("sql", "longer than %d bytes", maxSQLBytes))
		case err != nil:
			p.fail(bad("sql", "reading the body: %v", err))
		case strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
			var doc struct {
				SQL string `json:"sql"`
			}
			if err := json.Unmarshal(body, &doc); err != nil {
				p.fail(bad("sql", "the body is not {\"sql\": \"...\"}: %v", err))
			}
			stmt = doc.SQL
		default:
			stmt = string(body)
		}
	}
	if p.err == nil && strings.TrimSpace(stmt) == "" {
		p.fail(bad("sql", "a SELECT statement is required"))
	}
	if p.err == nil && len(stmt) > maxSQLBytes {
		p.fail(bad("sql", "longer than %d bytes", maxSQLBytes))
	}
	if p.err != nil {
		a.reply(w, nil, p.err)
		return
	}
	res, err := query.RunSQL(r.Context(), a.s, stmt, query.Window{From: from, To: to, Interval: step})
	if err != nil {
		a.reply(w, nil, err)
		return
	}
	a.replyRows(w, res)
}
