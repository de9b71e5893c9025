package plugin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// eventKinds are gpu_events.kind's values.
var eventKinds = []string{"xid", "ecc_sbe", "ecc_dbe", "throttle", "fell_off_bus"}

// eventsMax caps the events one annotation query returns: more would be unreadable as marks on a
// graph, and the query stays bounded on a fleet with an XID storm.
const eventsMax = 5000

// eventsSQL selects the GPU events of [from, to) for an annotations query: the kinds asked (all
// if none) and the query's filters on the dimensions events carry, newest last.
func eventsSQL(db string, q Query, from, to time.Time) (string, store.Params, error) {
	for _, k := range q.Kinds {
		if !slices.Contains(eventKinds, k) {
			return "", nil, fmt.Errorf("%w: kinds: %q is not one of %s", query.ErrInvalid, k, strings.Join(eventKinds, ", "))
		}
	}
	p := store.Params{"from_ms": strconv.FormatInt(from.UnixMilli(), 10), "to_ms": strconv.FormatInt(to.UnixMilli(), 10)}
	where := []string{"time >= fromUnixTimestamp64Milli({from_ms:Int64})", "time < fromUnixTimestamp64Milli({to_ms:Int64})"}
	if len(q.Kinds) > 0 {
		where = append(where, "kind IN {kinds:Array(String)}")
		p["kinds"] = store.FormatArray(q.Kinds)
	}
	filters, err := q.filters()
	if err != nil {
		return "", nil, err
	}
	for i, f := range filters {
		switch f.Dim {
		case query.Cluster, query.Pool, query.Rack, query.Node, query.GPU: // columns of gpu_events
		default:
			return "", nil, fmt.Errorf("%w: filters: events carry cluster, pool, rack, node and gpu, not %s", query.ErrInvalid, f.Dim.Name())
		}
		if len(f.Values) == 0 {
			// No values keeps no event (a template variable with no options).
			where = append(where, "0")
			continue
		}
		name := "f" + strconv.Itoa(i)
		where = append(where, string(f.Dim)+" IN {"+name+":Array(String)}")
		p[name] = store.FormatArray(f.Values)
	}
	// The limit applies to the events, before the join: the catalog adds columns, never rows (one
	// row per code), and a LEFT JOIN keeps an XID it does not know, as a newer driver logs.
	// gpu_events.code is a throttle bitmask or 0 for the other kinds, so only an XID takes the
	// catalog's words.
	xid := func(col string) string { return "if(e.kind = 'xid', c." + col + ", '')" }
	return "SELECT e.ms, e.kind, e.code, e.cluster, e.node, e.uuid, e.pid, e.message, " +
		xid("mnemonic") + ", " + xid("description") + ", " + xid("immediate_action") +
		" FROM (SELECT toUnixTimestamp64Milli(time) AS ms, kind, code, cluster, node, uuid, pid, message FROM " +
		store.Table(db, schema.GPUEvents) + " WHERE " + strings.Join(where, " AND ") +
		" ORDER BY time LIMIT " + strconv.Itoa(eventsMax) + ") AS e LEFT JOIN " + store.Table(db, schema.XIDCatalog) +
		" AS c ON c.code = e.code ORDER BY e.ms", p, nil
}

// annotations answers an annotations query: a frame of time, text and tags that Grafana's
// standard annotation support turns into marks, one per event.
func (d *Datasource) annotations(ctx context.Context, q Query, from, to time.Time) ([]*data.Frame, error) {
	sql, p, err := eventsSQL(d.st.Database(), q, from, to)
	if err != nil {
		return nil, err
	}
	r, err := d.st.QueryWith(ctx, sql, p)
	if err != nil {
		return nil, fmt.Errorf("gpu events: %w", err)
	}
	times := make([]time.Time, 0, len(r.Rows))
	texts := make([]string, 0, len(r.Rows))
	tags := make([]string, 0, len(r.Rows))
	for _, row := range r.Rows {
		if len(row) < 11 {
			continue
		}
		ms, _ := asInt(row[0])
		code, _ := asInt(row[2])
		pid, _ := asInt(row[6])
		kind, cluster, node, uuid, msg := str(row[1]), str(row[3]), str(row[4]), str(row[5]), str(row[7])
		times = append(times, time.UnixMilli(ms).UTC())
		texts = append(texts, eventText(kind, code, pid, node, uuid, msg, xidMeaning{str(row[8]), str(row[9]), str(row[10])}))
		t := []string{kind, cluster, node}
		if kind == "xid" {
			t = append(t, "xid "+strconv.FormatInt(code, 10))
		}
		tags = append(tags, strings.Join(t, ","))
	}
	f := data.NewFrame("gpu events",
		data.NewField("time", nil, times),
		data.NewField("text", nil, texts),
		data.NewField("tags", nil, tags))
	return []*data.Frame{f}, nil
}

// xidMeaning is what NVIDIA's Xid catalog says of a code (internal/xid): empty for a code it does
// not list.
type xidMeaning struct{ mnemonic, description, action string }

// eventText is what an event's mark says: what happened (for an XID, the catalog's mnemonic,
// description and immediate action), where, and the driver's message.
func eventText(kind string, code, pid int64, node, uuid, msg string, m xidMeaning) string {
	var what string
	switch kind {
	case "xid":
		what = "XID " + strconv.FormatInt(code, 10)
		if m.mnemonic != "" {
			what += " " + m.mnemonic
		}
	case "ecc_sbe":
		what = "ECC single-bit error"
	case "ecc_dbe":
		what = "ECC double-bit error"
	case "throttle":
		what = fmt.Sprintf("clocks throttled (reasons 0x%x)", code)
	case "fell_off_bus":
		what = "GPU fell off the bus"
	default:
		what = kind
	}
	s := what + " on " + node + " " + uuid
	if pid > 0 {
		s += " (pid " + strconv.FormatInt(pid, 10) + ")"
	}
	if msg != "" {
		s += ": " + msg
	}
	if kind == "xid" {
		switch {
		case m.mnemonic == "":
			s += ". Not in the Xid catalog"
		case m.action == "":
			s += ". Catalog: " + m.description
		default:
			s += ". Catalog: " + m.description + "; immediate action " + m.action
		}
	}
	return s
}

// asInt reads an integer column, which arrives as int64, uint64, float64 or text by the engine's
// transport (64-bit integers are quoted in JSON).
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	case float64:
		return int64(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func str(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if v == nil {
		return ""
	}
	return toString(v)
}
