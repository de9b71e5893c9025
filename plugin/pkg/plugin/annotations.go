package plugin

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/query"
)

// eventsMax caps the events one annotation query returns (query.EventsMax): more would be
// unreadable as marks on a graph, and the query stays bounded on a fleet with an XID storm.
const eventsMax = query.EventsMax

// eventQuery is an annotations query's events: [from, to), the kinds asked (all if none) and the
// query's filters on the dimensions events carry.
func eventQuery(q Query, from, to time.Time) (query.EventQuery, error) {
	filters, err := q.filters()
	if err != nil {
		return query.EventQuery{}, err
	}
	return query.EventQuery{From: from, To: to, Kinds: q.Kinds, Filters: filters, Limit: eventsMax}, nil
}

// eventsSQL is the statement an annotations query runs (the compile resource shows it).
func eventsSQL(db string, q Query, from, to time.Time) (string, store.Params, error) {
	eq, err := eventQuery(q, from, to)
	if err != nil {
		return "", nil, err
	}
	return query.EventsSQL(db, eq)
}

// annotations answers an annotations query: a frame of time, text and tags that Grafana's
// standard annotation support turns into marks, one per event.
func (d *Datasource) annotations(ctx context.Context, q Query, from, to time.Time) ([]*data.Frame, error) {
	eq, err := eventQuery(q, from, to)
	if err != nil {
		return nil, err
	}
	list, err := query.Events(ctx, d.st, eq)
	if err != nil {
		return nil, err
	}
	times := make([]time.Time, 0, len(list.Events))
	texts := make([]string, 0, len(list.Events))
	tags := make([]string, 0, len(list.Events))
	for _, e := range list.Events {
		times = append(times, e.Time)
		texts = append(texts, eventText(e.Kind, e.Code, e.PID, e.Node, e.UUID, e.Message, xidMeaning{e.Mnemonic, e.Description, e.Action}))
		t := []string{e.Kind, e.Cluster, e.Node}
		if e.Kind == "xid" {
			t = append(t, "xid "+strconv.FormatInt(e.Code, 10))
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
