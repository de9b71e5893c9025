package ingest

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// Timestamps further than this from the ingest clock are rejected as absurd (a broken agent clock),
// not stored where they would land in a partition no query looks at. The future bound is
// Config.MaxClockAhead; defaultMaxAhead is its default.
const (
	defaultMaxAhead = time.Hour
	maxPast         = 30 * 24 * time.Hour
)

// maxCounter bounds a counter reading: at or over 2^63 it is no count a GPU reached (an energy
// counter in mJ would take 300,000 years at 1 kW) but a negative number sent unsigned, and
// increase() and energy figures, computed as Int64 differences, turn it into nonsense. Such a
// reading is stored as NULL and counted, like an implausible gauge.
const maxCounter = math.MaxInt64

// sampleColumns is the columnar form of gpu_samples rows, appended in place and reused.
type sampleColumns struct {
	block                                          store.Block
	time                                           *store.ColDateTime64
	cluster, node, uuid, model, job, driver, agent *store.ColLowCardString
	rack, pool, parent                             *store.ColLowCardString
	gpu                                            *store.ColUInt8
	seq                                            *store.ColUInt64
	interval                                       *store.ColUInt32
	folded                                         *store.ColUInt8         // schema.FoldedColumn, when the rows are folded by ingest (foldRows)
	foldMask                                       uint8                   // the value folded takes (foldRows)
	gauges                                         []*store.ColNullFloat32 // by registry position; nil for counters
	counters                                       []*store.ColNullUInt64  // by registry position; nil for gauges
	byMetric                                       []*wire.Metric          // scratch: wire column per registry position
	lo, hi                                         []float64               // plausible range per registry position
	nulled                                         []uint64                // readings stored as NULL as implausible
	ahead                                          time.Duration           // Config.MaxClockAhead
	gpuKeys                                        [][4]uint32             // scratch: uuid, model, job, parent keys per GPU of a batch

	// lookup are the batches appended that may repeat one stored before (repeats.go).
	lookup []sampleMsg
}

func newSampleColumns() *sampleColumns {
	c := &sampleColumns{
		time:     &store.ColDateTime64{ColName: "time"},
		cluster:  &store.ColLowCardString{ColName: "cluster"},
		node:     &store.ColLowCardString{ColName: "node"},
		rack:     &store.ColLowCardString{ColName: "rack"},
		pool:     &store.ColLowCardString{ColName: "pool"},
		gpu:      &store.ColUInt8{ColName: "gpu"},
		uuid:     &store.ColLowCardString{ColName: "uuid"},
		parent:   &store.ColLowCardString{ColName: "parent_uuid"},
		model:    &store.ColLowCardString{ColName: "model"},
		job:      &store.ColLowCardString{ColName: "job_id"},
		driver:   &store.ColLowCardString{ColName: "driver_version"},
		agent:    &store.ColLowCardString{ColName: "agent_id"},
		seq:      &store.ColUInt64{ColName: "seq"},
		interval: &store.ColUInt32{ColName: "interval_ms"},
		ahead:    defaultMaxAhead,
	}
	c.block.Columns = []store.Column{c.time, c.cluster, c.node, c.rack, c.pool, c.gpu, c.uuid, c.parent, c.model, c.job, c.driver, c.agent, c.seq, c.interval}
	all := gpumetric.All()
	c.gauges = make([]*store.ColNullFloat32, len(all))
	c.counters = make([]*store.ColNullUInt64, len(all))
	c.byMetric = make([]*wire.Metric, len(all))
	c.lo, c.hi, c.nulled = make([]float64, len(all)), make([]float64, len(all)), make([]uint64, len(all))
	for i, m := range all {
		if !m.Kind.Integer() {
			c.lo[i], c.hi[i], _ = gpumetric.Plausible(i)
			c.gauges[i] = &store.ColNullFloat32{ColName: m.Column}
			c.block.Columns = append(c.block.Columns, c.gauges[i])
		} else {
			c.counters[i] = &store.ColNullUInt64{ColName: m.Column}
			c.block.Columns = append(c.block.Columns, c.counters[i])
		}
	}
	return c
}

// foldRows marks every row appended from now on as folded by ingest into the levels of mask (their
// bits, schema.Level.FoldBit, in schema.FoldedColumn), which their views leave out. Call it on
// empty columns.
func (c *sampleColumns) foldRows(mask uint8) {
	c.foldMask = mask
	if c.folded == nil {
		c.folded = &store.ColUInt8{ColName: schema.FoldedColumn}
		c.block.Columns = append(c.block.Columns, c.folded)
	}
}

// check validates a decoded batch against the catalogue and the clock before any row is appended,
// so a rejected batch leaves the columns untouched.
func (c *sampleColumns) check(b *wire.Samples, now time.Time) error {
	lo, hi := now.Add(-maxPast).UnixMilli(), now.Add(c.ahead).UnixMilli()
	for i, ms := range b.TimeUnixMs {
		if ms < lo || ms > hi {
			return fmt.Errorf("%w: row %d time %s is outside [now-%s, now+%s]", wire.ErrMalformed, i,
				time.UnixMilli(ms).UTC().Format(time.RFC3339), maxPast, c.ahead)
		}
	}
	for i := range b.GPUs {
		if idx := b.GPUs[i].Index; idx > math.MaxUint8 {
			return fmt.Errorf("%w: gpu index %d over 255", wire.ErrMalformed, idx)
		}
	}
	all := gpumetric.All()
	for j := range b.Metrics {
		m := &b.Metrics[j]
		i := gpumetric.Index(gpumetric.ID(m.ID))
		if i < 0 {
			continue // a newer agent's metric: dropped, the rest of the batch is kept
		}
		// Counters and bitmasks travel as counts, gauges as values (gpumetric.Kind.Integer).
		integer := all[i].Kind.Integer()
		if !integer && len(m.Counts) > 0 || integer && len(m.Values) > 0 {
			return fmt.Errorf("%w: metric %s carries the wrong value type", wire.ErrMalformed, all[i].Column)
		}
	}
	return nil
}

// appendBatch adds every row of a checked batch. Columns are filled one at a time (not row by row)
// so each inner loop touches one destination slice.
func (c *sampleColumns) appendBatch(b *wire.Samples) {
	clear(c.byMetric)
	for j := range b.Metrics {
		if i := gpumetric.Index(gpumetric.ID(b.Metrics[j].ID)); i >= 0 {
			c.byMetric[i] = &b.Metrics[j]
		}
	}
	rows := len(b.TimeUnixMs)
	c.time.V = append(c.time.V, b.TimeUnixMs...)
	c.cluster.AppendKeyN(c.cluster.Key(b.Cluster), rows)
	c.node.AppendKeyN(c.node.Key(b.Node), rows)
	c.rack.AppendKeyN(c.rack.Key(b.Rack), rows)
	c.pool.AppendKeyN(c.pool.Key(b.Pool), rows)
	c.driver.AppendKeyN(c.driver.Key(b.DriverVersion), rows)
	c.agent.AppendKeyN(c.agent.Key(b.AgentID), rows)
	c.seq.V = appendN(c.seq.V, b.Seq, rows)
	c.interval.V = appendN(c.interval.V, b.IntervalMs, rows)
	if c.folded != nil {
		c.folded.V = appendN(c.folded.V, c.foldMask, rows)
	}
	// Dictionary keys of each GPU's labels, looked up once per message rather than once per row.
	c.gpuKeys = c.gpuKeys[:0]
	for i := range b.GPUs {
		g := &b.GPUs[i]
		c.gpuKeys = append(c.gpuKeys, [4]uint32{c.uuid.Key(g.UUID), c.model.Key(g.Model), c.job.Key(g.JobID), c.parent.Key(g.ParentUUID)})
	}
	for _, gi := range b.GPU {
		k := &c.gpuKeys[gi]
		c.gpu.V = append(c.gpu.V, uint8(b.GPUs[gi].Index))
		c.uuid.AppendKey(k[0])
		c.model.AppendKey(k[1])
		c.job.AppendKey(k[2])
		c.parent.AppendKey(k[3])
	}
	for i, m := range c.byMetric {
		if col := c.gauges[i]; col != nil {
			if m == nil {
				col.AppendNulls(rows)
				continue
			}
			// NaN, ±Inf and values outside the plausible range are not readings: stored as
			// absent (and counted) so that aggregates stay finite and meaningful.
			lo, hi := c.lo[i], c.hi[i]
			var bad uint64
			for r, v := range m.Values {
				if !m.Has(r) {
					col.Append(0, true)
					continue
				}
				ok := v >= lo && v <= hi // false for NaN
				if !ok {
					bad++
				}
				col.Append(float32(v), !ok)
			}
			c.nulled[i] += bad
			continue
		}
		col := c.counters[i]
		if m == nil {
			col.AppendNulls(rows)
			continue
		}
		var bad uint64
		for r, v := range m.Counts {
			if v > maxCounter && m.Has(r) {
				bad++
				col.Append(0, true)
				continue
			}
			col.Append(v, !m.Has(r))
		}
		c.nulled[i] += bad
	}
}

// appendN appends n copies of v.
func appendN[T any](dst []T, v T, n int) []T {
	dst = slices.Grow(dst, n)
	for range n {
		dst = append(dst, v)
	}
	return dst
}

// eventColumns is the columnar form of gpu_events rows.
type eventColumns struct {
	block                              store.Block
	time                               *store.ColDateTime64
	cluster, node, uuid, kind, message *store.ColString
	rack, pool, agent                  *store.ColString
	gpu                                *store.ColUInt8
	code, seq                          *store.ColUInt64
	pid                                *store.ColUInt32
	ahead                              time.Duration // Config.MaxClockAhead

	// msgs are the messages appended, in row order: how repeats are found and dropped (eventdedup.go).
	msgs []eventMsg
}

func newEventColumns() *eventColumns {
	c := &eventColumns{
		time:    &store.ColDateTime64{ColName: "time"},
		cluster: &store.ColString{ColName: "cluster"},
		node:    &store.ColString{ColName: "node"},
		rack:    &store.ColString{ColName: "rack"},
		pool:    &store.ColString{ColName: "pool"},
		gpu:     &store.ColUInt8{ColName: "gpu"},
		uuid:    &store.ColString{ColName: "uuid"},
		kind:    &store.ColString{ColName: "kind"},
		code:    &store.ColUInt64{ColName: "code"},
		pid:     &store.ColUInt32{ColName: "pid"},
		message: &store.ColString{ColName: "message"},
		agent:   &store.ColString{ColName: "agent_id"},
		seq:     &store.ColUInt64{ColName: "seq"},
		ahead:   defaultMaxAhead,
	}
	c.block.Columns = []store.Column{c.time, c.cluster, c.node, c.rack, c.pool, c.gpu, c.uuid, c.kind, c.code, c.pid, c.message, c.agent, c.seq}
	return c
}

// EventKindName is the kind as stored in gpu_events.kind.
func EventKindName(k wirepb.EventKind) string {
	switch k {
	case wirepb.EventKind_EVENT_KIND_XID:
		return "xid"
	case wirepb.EventKind_EVENT_KIND_ECC_SINGLE_BIT:
		return "ecc_sbe"
	case wirepb.EventKind_EVENT_KIND_ECC_DOUBLE_BIT:
		return "ecc_dbe"
	case wirepb.EventKind_EVENT_KIND_THROTTLE:
		return "throttle"
	case wirepb.EventKind_EVENT_KIND_FELL_OFF_BUS:
		return "fell_off_bus"
	case wirepb.EventKind_EVENT_KIND_HEALTH:
		// code is the internal/health state number, message the reason (docs/health.md)
		return "health"
	}
	return "unknown"
}

func (c *eventColumns) check(b *wirepb.EventBatch, now time.Time) error {
	// Agents send an event batch only when they have events: an empty one is another message
	// (a sample batch decodes as one) that would otherwise vanish without a dead letter.
	if len(b.Events) == 0 {
		return fmt.Errorf("%w: event batch carries no events", wire.ErrMalformed)
	}
	lo, hi := now.Add(-maxPast).UnixMilli(), now.Add(c.ahead).UnixMilli()
	for i, e := range b.Events {
		if e.TimeUnixMs < lo || e.TimeUnixMs > hi {
			return fmt.Errorf("%w: event %d time is outside [now-%s, now+%s]", wire.ErrMalformed, i, maxPast, c.ahead)
		}
		if e.GpuIndex > math.MaxUint8 {
			return fmt.Errorf("%w: event %d gpu index %d over 255", wire.ErrMalformed, i, e.GpuIndex)
		}
	}
	return nil
}

func (c *eventColumns) appendBatch(b *wirepb.EventBatch) {
	if len(b.Events) > 0 {
		c.msgs = append(c.msgs, eventMsg{row: c.time.Len(), key: msgKey{cluster: b.Cluster, node: b.Node, agent: b.AgentId,
			seq: b.Seq, firstMs: b.Events[0].TimeUnixMs}})
	}
	for _, e := range b.Events {
		c.time.V = append(c.time.V, e.TimeUnixMs)
		c.cluster.V = append(c.cluster.V, b.Cluster)
		c.node.V = append(c.node.V, b.Node)
		c.rack.V = append(c.rack.V, b.Rack)
		c.pool.V = append(c.pool.V, b.Pool)
		c.gpu.V = append(c.gpu.V, uint8(e.GpuIndex))
		c.uuid.V = append(c.uuid.V, e.GpuUuid)
		c.kind.V = append(c.kind.V, EventKindName(e.Kind))
		c.code.V = append(c.code.V, e.Code)
		c.pid.V = append(c.pid.V, e.Pid)
		c.message.V = append(c.message.V, e.Message)
		c.agent.V = append(c.agent.V, b.AgentId)
		c.seq.V = append(c.seq.V, b.Seq)
	}
}
