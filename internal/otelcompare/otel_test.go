// Package otelcompare sets gpufleet's storage beside the layout most users would otherwise pick:
// dcgm-exporter scraped by an OpenTelemetry Collector whose ClickHouse exporter writes one row per
// value into otel_metrics_gauge. It holds only tests and a benchmark (docs/comparison.md): the same
// simulated samples go into both layouts in one chDB, and the two are measured side by side.
package otelcompare

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/dcgmcompat"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// otelTable is the exporter's default gauge table name (metrics_table_name's gauge suffix).
const otelTable = "otel_metrics_gauge"

// otelDDL is the table the OpenTelemetry Collector's ClickHouse exporter creates for gauges
// (opentelemetry-collector-contrib, exporter/clickhouseexporter/internal/sql_templates/
// metrics_gauge_table.sql): the same columns, codecs, skip indexes, partitioning, sort key and
// settings, with the engine at its default (MergeTree) and no TTL (the exporter adds one only when
// configured).
func otelDDL(db string) string {
	return `CREATE TABLE ` + store.Table(db, otelTable) + ` (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1`
}

// What a dcgm-exporter → Prometheus receiver → ClickHouse exporter pipeline writes besides the
// reading: the receiver names the service after the scrape job and the instance after the target,
// and stamps its own scope (its module path and the Collector's version; the number is only a
// string of the usual length).
const (
	serviceName  = "dcgm-exporter"
	scopeName    = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
	scopeVersion = "0.139.0"
	scrapePort   = "9400"
)

// resourceKeys and attrKeys are the Map keys of every row, in the order they are sent. The
// datapoint attributes are dcgm-exporter's labels (gpu, UUID, device, modelName, Hostname) plus
// the cluster a collector's resource or attributes processor adds; the k8s and driver labels a
// real deployment carries as well are left out, which only flatters the OTel side.
var (
	resourceKeys = []string{"server.address", "server.port", "service.instance.id", "service.name", "url.scheme"}
	attrKeys     = []string{"Hostname", "UUID", "cluster", "device", "gpu", "modelName"}
)

// otelMetric is how one catalogue metric is named in the OTel table: dcgm-exporter's field name
// where it exports one, else the catalogue column (a field only gpufleet reads). Values stay in
// the catalogue's units so that the two tables hold the same numbers.
type otelMetric struct {
	name, help string
}

func otelMetrics() []otelMetric {
	dcgm := map[gpumetric.ID]string{}
	for _, m := range dcgmcompat.Metrics {
		dcgm[m.ID] = m.Name
	}
	var out []otelMetric
	for _, m := range gpumetric.All() {
		name, ok := dcgm[m.ID]
		if !ok {
			name = m.Column
		}
		out = append(out, otelMetric{name: name, help: m.Help})
	}
	return out
}

// otelName returns the OTel metric name of a gpu_samples column.
func otelName(column string) string {
	ms := otelMetrics()
	for i, m := range gpumetric.All() {
		if m.Column == column {
			return ms[i].name
		}
	}
	panic("no metric " + column)
}

// fleet is the simulated fleet both layouts are loaded with.
type fleet struct {
	seed         uint64
	nodes, gpus  int
	clusters     []string
	from, to     time.Time
	step         time.Duration
	rowsPerBlock int // gpu_samples rows per insert, ingest's --batch-rows
}

// blocks samples the fleet with agent/sim and turns the samples into gpu_samples blocks the way
// ingest does (wire encode, decode, SampleBuilder), cut every rowsPerBlock rows.
func (f fleet) blocks(tb testing.TB) []*store.Block {
	tb.Helper()
	nodes := make([]*sim.Node, f.nodes)
	for i := range nodes {
		nodes[i] = sim.NewNode(f.seed, f.clusters[i%len(f.clusters)], i, f.gpus)
	}
	var out []*store.Block
	b := ingest.NewSampleBuilder()
	var dec wire.SampleDecoder
	now := time.Now()
	for t, s := f.from, uint64(1); t.Before(f.to); t, s = t.Add(f.step), s+1 {
		for _, n := range nodes {
			batch := &wirepb.SampleBatch{AgentId: n.Name, Seq: s, Cluster: n.Cluster, Node: n.Name, DriverVersion: "570.124.06"}
			batch.Rack, batch.Pool = n.Placement()
			n.Sample(t, batch, nil)
			data, err := wire.EncodeSamples(batch)
			if err != nil {
				tb.Fatalf("encode samples: %v", err)
			}
			sb, err := dec.Decode(data)
			if err != nil {
				tb.Fatalf("decode samples: %v", err)
			}
			if err := b.Add(sb, now); err != nil {
				tb.Fatalf("build block: %v", err)
			}
		}
		if b.Block().Rows() >= f.rowsPerBlock {
			out = append(out, b.Block())
			b = ingest.NewSampleBuilder()
		}
	}
	if b.Block().Rows() > 0 {
		out = append(out, b.Block())
	}
	return out
}

// otelRows are OTel datapoints in compact form; encoding expands them into the exporter's columns.
type otelRows struct {
	timeNs []int64
	metric []uint16 // index into metrics
	series []uint32 // index into series
	value  []float64

	metrics []otelMetric
	labels  []gpuSeries
	byUUID  map[string]uint32
}

// gpuSeries is one GPU's labels: its datapoint attributes and the scrape target's resource.
type gpuSeries struct {
	attrs    [6]string // values of attrKeys
	resource [5]string // values of resourceKeys
}

func newOTelRows() *otelRows {
	return &otelRows{metrics: otelMetrics(), byUUID: map[string]uint32{}}
}

func (r *otelRows) len() int { return len(r.timeNs) }

func (r *otelRows) reset() {
	r.timeNs, r.metric, r.series, r.value = r.timeNs[:0], r.metric[:0], r.series[:0], r.value[:0]
}

func (r *otelRows) seriesOf(host, cluster, uuid, model string, gpu uint8) uint32 {
	if k, ok := r.byUUID[uuid]; ok {
		return k
	}
	g := strconv.Itoa(int(gpu))
	k := uint32(len(r.labels))
	r.labels = append(r.labels, gpuSeries{
		attrs:    [6]string{host, uuid, cluster, "nvidia" + g, g, model},
		resource: [5]string{host, scrapePort, host + ":" + scrapePort, serviceName, "http"},
	})
	r.byUUID[uuid] = k
	return k
}

// sampleCols are the gpu_samples columns of a block the conversion reads.
type sampleCols struct {
	time                       *store.ColDateTime64
	node, cluster, uuid, model *store.ColLowCardString
	gpu                        *store.ColUInt8
	gauges                     []*store.ColNullFloat32 // by catalogue position; nil for integers
	counts                     []*store.ColNullUInt64
}

func colsOf(b *store.Block) (sampleCols, error) {
	all := gpumetric.All()
	c := sampleCols{gauges: make([]*store.ColNullFloat32, len(all)), counts: make([]*store.ColNullUInt64, len(all))}
	pos := map[string]int{}
	for i, m := range all {
		pos[m.Column] = i
	}
	for _, col := range b.Columns {
		switch x := col.(type) {
		case *store.ColDateTime64:
			c.time = x
		case *store.ColUInt8:
			c.gpu = x
		case *store.ColLowCardString:
			switch x.ColName {
			case "node":
				c.node = x
			case "cluster":
				c.cluster = x
			case "uuid":
				c.uuid = x
			case "model":
				c.model = x
			}
		case *store.ColNullFloat32:
			c.gauges[pos[x.ColName]] = x
		case *store.ColNullUInt64:
			c.counts[pos[x.ColName]] = x
		}
	}
	if c.time == nil || c.node == nil || c.cluster == nil || c.uuid == nil || c.model == nil || c.gpu == nil {
		return c, fmt.Errorf("convert block: missing a label column of gpu_samples")
	}
	for i, m := range all {
		if c.gauges[i] == nil && c.counts[i] == nil {
			return c, fmt.Errorf("convert block: no column %s", m.Column)
		}
	}
	return c, nil
}

// add appends every non-NULL cell of a gpu_samples block as one datapoint, in the order a scrape
// delivers them: per node and instant, metric by metric, GPU by GPU.
func (r *otelRows) add(b *store.Block) error {
	c, err := colsOf(b)
	if err != nil {
		return err
	}
	rows := b.Rows()
	for lo := 0; lo < rows; {
		hi := lo + 1
		for hi < rows && c.time.V[hi] == c.time.V[lo] && c.node.Keys[hi] == c.node.Keys[lo] {
			hi++
		}
		ns := c.time.V[lo] * int64(time.Millisecond)
		series := make([]uint32, hi-lo)
		for i := lo; i < hi; i++ {
			series[i-lo] = r.seriesOf(c.node.Value(i), c.cluster.Value(i), c.uuid.Value(i), c.model.Value(i), c.gpu.V[i])
		}
		for m := range r.metrics {
			for i := lo; i < hi; i++ {
				var v float64
				if g := c.gauges[m]; g != nil {
					if g.Null[i] == 1 {
						continue
					}
					v = float64(g.V[i])
				} else {
					n := c.counts[m]
					if n.Null[i] == 1 {
						continue
					}
					v = float64(n.V[i])
				}
				r.timeNs = append(r.timeNs, ns)
				r.metric = append(r.metric, uint16(m))
				r.series = append(r.series, series[i-lo])
				r.value = append(r.value, v)
			}
		}
		lo = hi
	}
	return nil
}

// block returns rows [lo, hi) as a block in the exporter's columns (those it leaves at their
// defaults, the scope attributes, schema URLs and exemplars, are not sent).
func (r *otelRows) block(lo, hi int) *store.Block {
	n := hi - lo
	str := func(name string, v func(i int) string) store.Column {
		return nativeCol{name, "String", n, func(b []byte) []byte {
			for i := lo; i < hi; i++ {
				b = appendString(b, v(i))
			}
			return b
		}}
	}
	i64 := func(name string, v func(i int) int64) store.Column {
		return nativeCol{name, "DateTime64(9)", n, func(b []byte) []byte {
			for i := lo; i < hi; i++ {
				b = binary.LittleEndian.AppendUint64(b, uint64(v(i)))
			}
			return b
		}}
	}
	return &store.Block{Columns: []store.Column{
		nativeCol{"ResourceAttributes", "Map(LowCardinality(String), String)", n, func(b []byte) []byte {
			return appendMap(b, resourceKeys, lo, hi, func(i, k int) string { return r.labels[r.series[i]].resource[k] })
		}},
		str("ScopeName", func(int) string { return scopeName }),
		str("ScopeVersion", func(int) string { return scopeVersion }),
		nativeCol{"ServiceName", "LowCardinality(String)", n, func(b []byte) []byte {
			c := store.ColLowCardString{ColName: "ServiceName"}
			c.AppendKeyN(c.Key(serviceName), n)
			return c.AppendNative(b)
		}},
		str("MetricName", func(i int) string { return r.metrics[r.metric[i]].name }),
		str("MetricDescription", func(i int) string { return r.metrics[r.metric[i]].help }),
		str("MetricUnit", func(int) string { return "" }),
		nativeCol{"Attributes", "Map(LowCardinality(String), String)", n, func(b []byte) []byte {
			return appendMap(b, attrKeys, lo, hi, func(i, k int) string { return r.labels[r.series[i]].attrs[k] })
		}},
		i64("StartTimeUnix", func(int) int64 { return 0 }),
		i64("TimeUnix", func(i int) int64 { return r.timeNs[i] }),
		nativeCol{"Value", "Float64", n, func(b []byte) []byte {
			for i := lo; i < hi; i++ {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.value[i]))
			}
			return b
		}},
		nativeCol{"Flags", "UInt32", n, func(b []byte) []byte { return append(b, make([]byte, 4*n)...) }},
	}}
}

// nativeCol is a column whose Native encoding is computed when the block is sent.
type nativeCol struct {
	name, typ string
	n         int
	enc       func([]byte) []byte
}

func (c nativeCol) Name() string                 { return c.name }
func (c nativeCol) Type() string                 { return c.typ }
func (c nativeCol) Len() int                     { return c.n }
func (c nativeCol) Reset()                       {}
func (c nativeCol) AppendNative(b []byte) []byte { return c.enc(b) }

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendMap writes rows [lo, hi) of a Map(LowCardinality(String), String) whose every row has the
// same keys. A Map is Array(Tuple(key, value)) in Native format: the key column's low-cardinality
// state prefix first (it belongs to the stream, ahead of any data), then the array's cumulative
// offsets, the keys (dictionary and indexes) and the values.
func appendMap(b []byte, keys []string, lo, hi int, value func(i, k int) string) []byte {
	n := hi - lo
	b = binary.LittleEndian.AppendUint64(b, lowCardKeysVersion)
	for i := range n {
		b = binary.LittleEndian.AppendUint64(b, uint64((i+1)*len(keys)))
	}
	// The keys: flags (additional keys, a dictionary to update, UInt8 indexes), the dictionary as a
	// String column, then one index per entry; every row repeats 0 … len(keys)-1.
	b = binary.LittleEndian.AppendUint64(b, lowCardHasAdditionalKeys|lowCardNeedUpdateDictionary)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(n*len(keys)))
	for range n {
		for k := range keys {
			b = append(b, uint8(k))
		}
	}
	for i := lo; i < hi; i++ {
		for k := range keys {
			b = appendString(b, value(i, k))
		}
	}
	return b
}

// ClickHouse's low-cardinality serialization constants (SerializationLowCardinality), as
// store.ColLowCardString writes them.
const (
	lowCardKeysVersion          = 1
	lowCardHasAdditionalKeys    = 1 << 9
	lowCardNeedUpdateDictionary = 1 << 10
)
