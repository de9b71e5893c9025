package query

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// EventKinds are the values of gpu_events.kind (ingest/columns.go writes them).
var EventKinds = []string{"xid", "ecc_sbe", "ecc_dbe", "throttle", "fell_off_bus", "health"}

// EventsMax caps one events list whatever the caller asks: more is unreadable as marks on a graph
// or rows on a page, and the answer stays bounded on a fleet with an XID storm.
const EventsMax = 5000

// EventQuery selects GPU events: [From, To), the kinds asked (all if none), filters on the
// dimensions events carry, at most Limit (≤ EventsMax; 0 is EventsMax) of them, oldest first, or
// the newest ones when Newest is set.
type EventQuery struct {
	From, To time.Time
	Kinds    []string
	Filters  []Filter
	Limit    int
	Newest   bool
}

// Event is one GPU event; for an XID, with what NVIDIA's Xid catalog (internal/xid, table
// xid_catalog) says of its code: empty for a code the catalog does not list.
type Event struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Code        int64     `json:"code"`
	Cluster     string    `json:"cluster"`
	Node        string    `json:"node"`
	GPU         int64     `json:"gpu"`
	UUID        string    `json:"uuid"`
	PID         int64     `json:"pid"`
	Message     string    `json:"message"`
	Mnemonic    string    `json:"mnemonic,omitempty"`
	Description string    `json:"description,omitempty"`
	Action      string    `json:"action,omitempty"`
	Category    string    `json:"category,omitempty"`
}

// EventList is an events answer; Truncated says more events matched than the limit.
type EventList struct {
	Events    []Event `json:"events"`
	Truncated bool    `json:"truncated"`
}

func (q EventQuery) limit() int {
	if q.Limit <= 0 || q.Limit > EventsMax {
		return EventsMax
	}
	return q.Limit
}

// EventsSQL selects q's events, one more than the limit (to tell a cut list), with the columns
// ms, kind, code, cluster, node, uuid, pid, message, mnemonic, description, immediate_action, gpu,
// category, in time order.
func EventsSQL(db string, q EventQuery) (string, store.Params, error) {
	for _, k := range q.Kinds {
		if !slices.Contains(EventKinds, k) {
			return "", nil, fmt.Errorf("%w: kinds: %q is not one of %s", ErrInvalid, k, strings.Join(EventKinds, ", "))
		}
	}
	if !q.To.After(q.From) {
		return "", nil, fmt.Errorf("%w: the window's end must be after its start", ErrInvalid)
	}
	p := store.Params{"from_ms": strconv.FormatInt(q.From.UnixMilli(), 10), "to_ms": strconv.FormatInt(q.To.UnixMilli(), 10)}
	where := []string{"time >= fromUnixTimestamp64Milli({from_ms:Int64})", "time < fromUnixTimestamp64Milli({to_ms:Int64})"}
	if len(q.Kinds) > 0 {
		where = append(where, "kind IN {kinds:Array(String)}")
		p["kinds"] = store.FormatArray(q.Kinds)
	}
	for i, f := range q.Filters {
		switch f.Dim {
		case Cluster, Pool, Rack, Node, GPU: // columns of gpu_events
		default:
			return "", nil, fmt.Errorf("%w: filters: events carry cluster, pool, rack, node and gpu, not %s", ErrInvalid, f.Dim.Name())
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
	order := "time"
	if q.Newest {
		order = "time DESC"
	}
	// The limit applies to the events, before the join: the catalog adds columns, never rows (one
	// row per code), and a LEFT JOIN keeps an XID it does not know, as a newer driver logs.
	// gpu_events.code is a throttle bitmask, a health state or 0 for the other kinds, so only an
	// XID takes the catalog's words.
	xid := func(col string) string { return "if(e.kind = 'xid', c." + col + ", '')" }
	return "SELECT e.ms, e.kind, e.code, e.cluster, e.node, e.uuid, e.pid, e.message, " +
		xid("mnemonic") + ", " + xid("description") + ", " + xid("immediate_action") + ", e.gpu, " + xid("category") +
		" FROM (SELECT toUnixTimestamp64Milli(time) AS ms, kind, code, cluster, node, gpu, uuid, pid, message FROM " +
		store.Table(db, schema.GPUEvents) + " WHERE " + strings.Join(where, " AND ") +
		" ORDER BY " + order + " LIMIT " + strconv.Itoa(q.limit()+1) + ") AS e LEFT JOIN " + store.Table(db, schema.XIDCatalog) +
		" AS c ON c.code = e.code ORDER BY e.ms", p, nil
}

// Events answers q.
func Events(ctx context.Context, s store.Store, q EventQuery) (EventList, error) {
	sql, p, err := EventsSQL(s.Database(), q)
	if err != nil {
		return EventList{}, err
	}
	r, err := s.QueryWith(ctx, sql, p)
	if err != nil {
		return EventList{}, fmt.Errorf("gpu events: %w", err)
	}
	out := EventList{Events: make([]Event, 0, min(len(r.Rows), q.limit()))}
	for _, row := range r.Rows {
		if len(row) < 13 {
			continue
		}
		out.Events = append(out.Events, Event{Time: time.UnixMilli(asInt(row[0])).UTC(), Kind: asString(row[1]), Code: asInt(row[2]),
			Cluster: asString(row[3]), Node: asString(row[4]), UUID: asString(row[5]), PID: asInt(row[6]), Message: asString(row[7]),
			Mnemonic: asString(row[8]), Description: asString(row[9]), Action: asString(row[10]), GPU: asInt(row[11]), Category: asString(row[12])})
	}
	if len(out.Events) > q.limit() {
		out.Truncated = true
		// One more than the limit was read; the extra is the oldest kept (Newest) or the newest.
		if q.Newest {
			out.Events = out.Events[1:]
		} else {
			out.Events = out.Events[:q.limit()]
		}
	}
	return out, nil
}
