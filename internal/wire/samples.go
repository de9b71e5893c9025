package wire

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Samples is a decoded SampleBatch laid out for ingest's hot path: its slices are reused from one
// Decode to the next and its strings are interned, so a steady fleet decodes without allocating.
// It holds what proto.Unmarshal of wirepb.SampleBatch would, field for field (the fuzz target
// FuzzSampleDecoderMatchesProto checks that on arbitrary input).
type Samples struct {
	SchemaVersion                                      uint32
	AgentID, Cluster, Node, DriverVersion, CudaVersion string
	Rack, Pool                                         string
	Seq                                                uint64
	IntervalMs                                         uint32
	GPUs                                               []GPU
	TimeUnixMs                                         []int64
	GPU                                                []uint32
	Metrics                                            []Metric
}

// GPU is one device's identity in a Samples.
type GPU struct {
	Index                                uint32
	UUID, Model, Serial, PCIBusID, JobID string
	ParentUUID                           string // a MIG instance's GPU; "" for a whole GPU
}

// Metric is one metric column in a Samples.
type Metric struct {
	ID      uint32
	Present []byte
	Values  []float64
	Counts  []uint64
}

// Has reports whether row i of the column has a value.
func (m *Metric) Has(i int) bool {
	return len(m.Present) == 0 || m.Present[i>>3]&(1<<(i&7)) != 0
}

// SampleDecoder decodes gpu.samples messages into a reused Samples. It is not safe for concurrent
// use; each ingest batcher owns one.
type SampleDecoder struct {
	s      Samples
	strs   map[string]string
	metric int // Metrics entries in use; the slice keeps earlier entries' buffers for reuse
}

// internLimit bounds the interned strings: a fleet has far fewer distinct labels, and a flood of
// unique ones (a misbehaving agent) only costs a reset.
const internLimit = 1 << 16

func (d *SampleDecoder) str(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", malformed("sample batch: string field is not valid UTF-8")
	}
	if s, ok := d.strs[string(b)]; ok {
		return s, nil
	}
	if d.strs == nil || len(d.strs) >= internLimit {
		d.strs = make(map[string]string, 256)
	}
	s := string(b)
	d.strs[s] = s
	return s, nil
}

// Decode parses and checks one message. The result is valid until the next call.
// Every error wraps ErrMalformed and says what is wrong.
func (d *SampleDecoder) Decode(data []byte) (*Samples, error) {
	s := &d.s
	metrics := s.Metrics[:cap(s.Metrics)]
	*s = Samples{GPUs: s.GPUs[:0], TimeUnixMs: s.TimeUnixMs[:0], GPU: s.GPU[:0]}
	d.metric = 0
	s.Metrics = metrics
	if err := d.decodeBatch(data); err != nil {
		s.Metrics = s.Metrics[:d.metric]
		return nil, err
	}
	s.Metrics = s.Metrics[:d.metric]
	if err := checkSamples(s); err != nil {
		return nil, err
	}
	return s, nil
}

// fields calls field for every field of message b with the bytes after its tag; field consumes
// the value and returns its length, negative for a protowire parse error. what names the message in
// errors.
func fields(b []byte, what string, field func(num protowire.Number, typ protowire.Type, b []byte) (int, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("%s: %v", what, protowire.ParseError(n))
		}
		b = b[n:]
		n, err := field(num, typ, b)
		if n < 0 {
			return malformed("%s: %v", what, protowire.ParseError(n))
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// stringField consumes a string value into dst; a nil dst skips it.
func (d *SampleDecoder) stringField(b []byte, dst *string) (int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 || dst == nil {
		return n, nil
	}
	s, err := d.str(v)
	*dst = s
	return n, err
}

// bytesField consumes a length-delimited value and hands it to use.
func bytesField(b []byte, use func(v []byte) error) (int, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return n, nil
	}
	return n, use(v)
}

func (d *SampleDecoder) decodeBatch(b []byte) error {
	s := &d.s
	return fields(b, "sample batch", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case typ == protowire.VarintType && (num == 1 || num == 3 || num == 9 || num == 10 || num == 14):
			v, n := protowire.ConsumeVarint(b)
			switch num {
			case 1:
				s.SchemaVersion = uint32(v)
			case 3:
				s.Seq = v
			case 9:
				s.TimeUnixMs = append(s.TimeUnixMs, int64(v))
			case 10:
				s.GPU = append(s.GPU, uint32(v))
			case 14:
				s.IntervalMs = uint32(v)
			}
			return n, nil
		case typ == protowire.BytesType && (num == 2 || num >= 4 && num <= 7 || num == 12 || num == 13):
			return d.stringField(b, [...]*string{2: &s.AgentID, 4: &s.Cluster, 5: &s.Node, 6: &s.DriverVersion, 7: &s.CudaVersion,
				12: &s.Rack, 13: &s.Pool}[num])
		case typ == protowire.BytesType && num == 8:
			return bytesField(b, d.decodeGPU)
		case typ == protowire.BytesType && num == 9:
			return bytesField(b, func(v []byte) (err error) {
				s.TimeUnixMs, err = appendPackedVarints(s.TimeUnixMs, v, func(x uint64) int64 { return int64(x) })
				return err
			})
		case typ == protowire.BytesType && num == 10:
			return bytesField(b, func(v []byte) (err error) {
				s.GPU, err = appendPackedVarints(s.GPU, v, func(x uint64) uint32 { return uint32(x) })
				return err
			})
		case typ == protowire.BytesType && num == 11:
			return bytesField(b, d.decodeMetric)
		}
		// Unknown fields (a newer agent's) and known fields of another wire type are skipped, as
		// proto.Unmarshal keeps them aside.
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

func (d *SampleDecoder) decodeGPU(b []byte) error {
	var g GPU
	err := fields(b, "sample batch: gpu", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case typ == protowire.VarintType && num == 1:
			v, n := protowire.ConsumeVarint(b)
			g.Index = uint32(v)
			return n, nil
		case typ == protowire.BytesType && num >= 2 && num <= 7:
			return d.stringField(b, [...]*string{2: &g.UUID, 3: &g.Model, 4: &g.Serial, 5: &g.PCIBusID, 6: &g.JobID, 7: &g.ParentUUID}[num])
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
	if err != nil {
		return err
	}
	if len(d.s.GPUs) >= MaxGPUs {
		return malformed("sample batch: over %d gpus", MaxGPUs)
	}
	d.s.GPUs = append(d.s.GPUs, g)
	return nil
}

func (d *SampleDecoder) decodeMetric(b []byte) error {
	s := &d.s
	if d.metric >= MaxMetricCol {
		return malformed("sample batch: over %d metric columns", MaxMetricCol)
	}
	if d.metric == len(s.Metrics) {
		s.Metrics = append(s.Metrics, Metric{})
		s.Metrics = s.Metrics[:cap(s.Metrics)]
	}
	m := &s.Metrics[d.metric]
	d.metric++
	m.ID, m.Present, m.Values, m.Counts = 0, m.Present[:0], m.Values[:0], m.Counts[:0]
	return fields(b, "sample batch: metric column", func(num protowire.Number, typ protowire.Type, b []byte) (int, error) {
		switch {
		case typ == protowire.VarintType && num == 1:
			v, n := protowire.ConsumeVarint(b)
			m.ID = uint32(v)
			return n, nil
		case typ == protowire.BytesType && num == 2:
			return bytesField(b, func(v []byte) error { m.Present = append(m.Present[:0], v...); return nil })
		case typ == protowire.Fixed64Type && num == 3:
			v, n := protowire.ConsumeFixed64(b)
			m.Values = append(m.Values, math.Float64frombits(v))
			return n, nil
		case typ == protowire.BytesType && num == 3:
			return bytesField(b, func(v []byte) error {
				if len(v)%8 != 0 {
					return malformed("sample batch: metric column: packed doubles of %d bytes", len(v))
				}
				for ; len(v) > 0; v = v[8:] {
					m.Values = append(m.Values, math.Float64frombits(binary.LittleEndian.Uint64(v)))
				}
				return nil
			})
		case typ == protowire.VarintType && num == 4:
			v, n := protowire.ConsumeVarint(b)
			m.Counts = append(m.Counts, v)
			return n, nil
		case typ == protowire.BytesType && num == 4:
			return bytesField(b, func(v []byte) (err error) {
				m.Counts, err = appendPackedVarints(m.Counts, v, func(x uint64) uint64 { return x })
				return err
			})
		}
		return protowire.ConsumeFieldValue(num, typ, b), nil
	})
}

func appendPackedVarints[T int64 | uint32 | uint64](dst []T, b []byte, conv func(uint64) T) ([]T, error) {
	for len(b) > 0 {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return dst, malformed("sample batch: packed varints: %v", protowire.ParseError(n))
		}
		if len(dst) > MaxRows {
			return dst, malformed("sample batch: over %d rows", MaxRows)
		}
		dst = append(dst, conv(v))
		b = b[n:]
	}
	return dst, nil
}

// checkSamples is CheckSamples for the decoder's layout.
func checkSamples(b *Samples) error {
	if b.SchemaVersion != 1 {
		return malformed("sample batch: unsupported schema_version %d (this build reads 1)", b.SchemaVersion)
	}
	if b.AgentID == "" {
		return malformed("sample batch: empty agent_id")
	}
	for _, l := range [...]struct{ name, v string }{{"agent_id", b.AgentID}, {"cluster", b.Cluster},
		{"node", b.Node}, {"driver_version", b.DriverVersion}, {"cuda_version", b.CudaVersion}, {"rack", b.Rack}, {"pool", b.Pool}} {
		if len(l.v) > MaxLabelLen {
			return malformed("sample batch: %s is %d bytes, limit %d", l.name, len(l.v), MaxLabelLen)
		}
	}
	if len(b.GPUs) > MaxGPUs {
		return malformed("sample batch: %d gpus, limit %d", len(b.GPUs), MaxGPUs)
	}
	var seenGPU [MaxGPUs]bool
	for i, g := range b.GPUs {
		if g.Index < MaxGPUs {
			if seenGPU[g.Index] {
				return malformed("sample batch: gpu index %d appears twice", g.Index)
			}
			seenGPU[g.Index] = true
		}
		if len(g.UUID) > MaxLabelLen || len(g.Model) > MaxLabelLen || len(g.Serial) > MaxLabelLen ||
			len(g.PCIBusID) > MaxLabelLen || len(g.JobID) > MaxLabelLen || len(g.ParentUUID) > MaxLabelLen {
			return malformed("sample batch: gpus[%d] has a label over %d bytes", i, MaxLabelLen)
		}
	}
	rows := len(b.TimeUnixMs)
	if rows > MaxRows {
		return malformed("sample batch: %d rows, limit %d", rows, MaxRows)
	}
	if len(b.GPU) != rows {
		return malformed("sample batch: %d gpu refs for %d rows", len(b.GPU), rows)
	}
	for i, g := range b.GPU {
		if int(g) >= len(b.GPUs) {
			return malformed("sample batch: row %d refers to gpu %d of %d", i, g, len(b.GPUs))
		}
	}
	if len(b.Metrics) > MaxMetricCol {
		return malformed("sample batch: %d metric columns, limit %d", len(b.Metrics), MaxMetricCol)
	}
	for i := range b.Metrics {
		m := &b.Metrics[i]
		for j := range i {
			if b.Metrics[j].ID == m.ID {
				return malformed("sample batch: metric %d has two columns", m.ID)
			}
		}
		if len(m.Values) != 0 && len(m.Counts) != 0 {
			return malformed("sample batch: metric %d has both values and counts", m.ID)
		}
		if n := len(m.Values) + len(m.Counts); n != rows {
			return malformed("sample batch: metric %d has %d entries for %d rows", m.ID, n, rows)
		}
		if len(m.Present) != 0 && len(m.Present) != (rows+7)/8 {
			return malformed("sample batch: metric %d presence bitmap is %d bytes for %d rows", m.ID, len(m.Present), rows)
		}
	}
	return nil
}
