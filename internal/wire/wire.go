// Package wire encodes and decodes the Kafka messages agents send: SampleBatch on gpu.samples and
// EventBatch on gpu.events (see gpufleet.proto). Decoding checks the batch's shape so that ingest
// never indexes out of range on hostile input.
package wire

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// SchemaVersion is the version this build writes.
const SchemaVersion = 1

// Limits that bound what one message may ask ingest to allocate.
const (
	MaxRows      = 1 << 20
	MaxGPUs      = 1 << 10
	MaxLabelLen  = 256
	MaxEvents    = 1 << 16
	MaxMetricCol = 1 << 10
)

// NoGPU is an event's gpu_index when the event names no GPU of its node: an Xid NVML delivered
// for a device the agent cannot match to one it reads. gpu_events.gpu is a UInt8 and no node has
// 256 GPUs; the uuid is empty, and the health rules judge no GPU by it.
const NoGPU = 255

// ErrMalformed marks input that can never decode; ingest dead-letters it rather than retrying.
var ErrMalformed = errors.New("malformed message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// EncodeSamples marshals a sample batch, stamping the current schema version.
func EncodeSamples(b *wirepb.SampleBatch) ([]byte, error) {
	b.SchemaVersion = SchemaVersion
	out, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode sample batch: %w", err)
	}
	return out, nil
}

// EncodeEvents marshals an event batch, stamping the current schema version.
func EncodeEvents(b *wirepb.EventBatch) ([]byte, error) {
	b.SchemaVersion = SchemaVersion
	out, err := proto.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode event batch: %w", err)
	}
	return out, nil
}

// DecodeSamples unmarshals and checks a sample batch into dst (reset first, so it can be reused).
// Every error wraps ErrMalformed and says what is wrong.
func DecodeSamples(data []byte, dst *wirepb.SampleBatch) error {
	if err := (proto.UnmarshalOptions{}).Unmarshal(data, dst); err != nil {
		return malformed("sample batch: %v", err)
	}
	return CheckSamples(dst)
}

// CheckSamples verifies the invariants the rest of the pipeline indexes by; it is the check
// SampleDecoder applies, run on a proto-decoded batch.
func CheckSamples(b *wirepb.SampleBatch) error {
	v := &Samples{SchemaVersion: b.SchemaVersion, AgentID: b.AgentId, Cluster: b.Cluster, Node: b.Node,
		DriverVersion: b.DriverVersion, CudaVersion: b.CudaVersion, Rack: b.Rack, Pool: b.Pool, Seq: b.Seq, IntervalMs: b.IntervalMs, TimeUnixMs: b.TimeUnixMs, GPU: b.Gpu}
	for _, g := range b.Gpus {
		v.GPUs = append(v.GPUs, GPU{Index: g.Index, UUID: g.Uuid, Model: g.Model, Serial: g.Serial, PCIBusID: g.PciBusId, JobID: g.JobId, ParentUUID: g.ParentUuid})
	}
	for _, m := range b.Metrics {
		v.Metrics = append(v.Metrics, Metric{ID: m.Metric, Present: m.Present, Values: m.Values, Counts: m.Counts})
	}
	return checkSamples(v)
}

// DecodeEvents unmarshals and checks an event batch into dst.
func DecodeEvents(data []byte, dst *wirepb.EventBatch) error {
	if err := (proto.UnmarshalOptions{}).Unmarshal(data, dst); err != nil {
		return malformed("event batch: %v", err)
	}
	if dst.SchemaVersion != 1 {
		return malformed("event batch: unsupported schema_version %d (this build reads 1)", dst.SchemaVersion)
	}
	if dst.AgentId == "" {
		return malformed("event batch: empty agent_id")
	}
	if len(dst.Events) > MaxEvents {
		return malformed("event batch: %d events, limit %d", len(dst.Events), MaxEvents)
	}
	if len(dst.AgentId) > MaxLabelLen || len(dst.Cluster) > MaxLabelLen || len(dst.Node) > MaxLabelLen ||
		len(dst.Rack) > MaxLabelLen || len(dst.Pool) > MaxLabelLen {
		return malformed("event batch: a label is over %d bytes", MaxLabelLen)
	}
	for i, e := range dst.Events {
		if len(e.GpuUuid) > MaxLabelLen || len(e.Message) > 4*MaxLabelLen {
			return malformed("event batch: event %d has an over-long uuid or message", i)
		}
	}
	return nil
}

// Present reports whether row i of column m has a value.
func Present(m *wirepb.MetricColumn, i int) bool {
	return len(m.Present) == 0 || m.Present[i>>3]&(1<<(i&7)) != 0
}

// SetPresent builds a presence bitmap of rows bits from a predicate; it returns nil when every row is
// present, which is the compact encoding.
func SetPresent(rows int, has func(i int) bool) []byte {
	var bm []byte
	for i := 0; i < rows; i++ {
		if has(i) {
			continue
		}
		if bm == nil {
			bm = make([]byte, (rows+7)/8)
			for j := range bm {
				bm[j] = 0xff
			}
		}
		bm[i>>3] &^= 1 << (i & 7)
	}
	return bm
}
