package httpapi_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

// The event log lists the newest events of the window, oldest first, cut at the limit with the
// cut said, each XID with NVIDIA's catalog words and an unknown code without them.
func TestEventLog(t *testing.T) {
	srv, _, at := failureServer(t)
	var got query.EventList
	if code, body := get(t, srv, "/api/v1/event_log?since=1h&kinds=xid&limit=3", &got); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	type row struct {
		ago            time.Duration
		code           int64
		mnemonic, act  string
		category, node string
	}
	want := []row{
		{15*time.Minute - 5*time.Second, 48, "ROBUST_CHANNEL_GPU_ECC_DBE", "WORKFLOW_XID_48", "gpu_memory", "e-0"},
		{12*time.Minute + time.Second, 13, "ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY", "RESTART_APP", "application", "w-0"},
		{9 * time.Minute, 999, "", "", "", "e-1"},
	}
	if len(got.Events) != len(want) || !got.Truncated {
		t.Fatalf("got %d events (truncated %v), want %d and truncated: %+v", len(got.Events), got.Truncated, len(want), got.Events)
	}
	for i, w := range want {
		e := got.Events[i]
		if at.Sub(e.Time) != w.ago || e.Code != w.code || e.Mnemonic != w.mnemonic || e.Action != w.act || e.Category != w.category || e.Node != w.node || e.Kind != "xid" {
			t.Errorf("event %d = %+v, want %+v", i, e, w)
		}
	}
	// Every kind, one cluster: west's agent start, DBE, XID 13 and the reboot it called for (its
	// event after the window's end left out).
	got = query.EventList{}
	if code, body := get(t, srv, "/api/v1/event_log?since=1h&filter=cluster=west", &got); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var kinds []string
	for _, e := range got.Events {
		if e.Cluster != "west" {
			t.Errorf("cluster filter let through %+v", e)
		}
		kinds = append(kinds, e.Kind)
	}
	if want := []string{"health", "ecc_dbe", "xid", "health"}; got.Truncated || !slices.Equal(kinds, want) {
		t.Errorf("west's events: kinds %v truncated %v, want %v, not cut", kinds, got.Truncated, want)
	}
	for _, path := range []string{
		"/api/v1/event_log?kinds=xid,bogus",
		"/api/v1/event_log?limit=0",
		"/api/v1/event_log?limit=5001",
		"/api/v1/event_log?limit=1%20OR%201",
		"/api/v1/event_log?since=-1h",
		"/api/v1/event_log?lookback=1h",
		"/api/v1/event_log?filter=model=H100",
		"/api/v1/event_log?filter=cluster",
		"/api/v1/event_log?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
	} {
		if code, body := get(t, srv, path, nil); code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", path, code, body)
		}
	}
}

// Hostile values in every parameter of the event log, and in the series' reason, are a 400 or an
// empty answer, and leave the tables and files as they were.
func TestEventLogHostile(t *testing.T) {
	srv, w, _ := failureServer(t)
	dir := testenv.CanaryDir(t)
	before := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t))
	db := w.Database()
	values := []string{
		"east' OR '1'='1", "x'); DROP TABLE " + db + ".gpu_events; --", `east\' OR 1=1`, "{from_ms:Int64}",
		"{kinds:Array(String)}", "e-0\nSELECT 1", "x' INTO OUTFILE '" + dir + "/victim.txt", "file('/etc/passwd')",
		strings.Repeat("e", 10_000), "😀",
	}
	for _, v := range values {
		for _, dim := range []string{"cluster", "node", "gpu"} {
			path := "/api/v1/event_log?since=2h&filter=" + url.QueryEscape(dim+"="+v)
			var got query.EventList
			switch code, body := get(t, srv, path, &got); {
			case code == 400:
			case code != 200 || len(got.Events) != 0:
				t.Errorf("%s: %d %s; want 400 or no events", path, code, body)
			}
		}
		for _, path := range []string{
			"/api/v1/event_log?kinds=" + url.QueryEscape(v),
			"/api/v1/event_log?limit=" + url.QueryEscape(v),
			"/api/v1/event_log?since=" + url.QueryEscape(v),
			"/api/v1/series?metric=throttle_reasons&agg=share&reason=" + url.QueryEscape(v),
		} {
			if code, body := get(t, srv, path, nil); code != 400 {
				t.Errorf("%s: %d %s; want 400", path, code, body)
			}
		}
	}
	if after := testenv.Snapshot(t, w, dir, ".", testenv.DataDir(t)); after != before {
		t.Fatalf("after the hostile parameters:\n%s\nwas\n%s", after, before)
	}
}
