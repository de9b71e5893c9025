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
	Seq                                                uint64
	GPUs                                               []GPU
	TimeUnixMs                                         []int64
	GPU                                                []uint32
	Metrics                                            []Metric
}

// GPU is one device's identity in a Samples.
type GPU struct {
	Index                                uint32
	UUID, Model, Serial, PCIBusID, JobID string
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

func (d *SampleDecoder) decodeBatch(b []byte) error {
	s := &d.s
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("sample batch: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var err error
		switch {
		case num == 1 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			s.SchemaVersion = uint32(v)
		case (num == 2 || num >= 4 && num <= 7) && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				var str string
				if str, err = d.str(v); err == nil {
					switch num {
					case 2:
						s.AgentID = str
					case 4:
						s.Cluster = str
					case 5:
						s.Node = str
					case 6:
						s.DriverVersion = str
					case 7:
						s.CudaVersion = str
					}
				}
			}
		case num == 3 && typ == protowire.VarintType:
			s.Seq, n = protowire.ConsumeVarint(b)
		case num == 8 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				err = d.decodeGPU(v)
			}
		case num == 9 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			s.TimeUnixMs = append(s.TimeUnixMs, int64(v))
		case num == 9 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				s.TimeUnixMs, err = appendPackedVarints(s.TimeUnixMs, v, func(x uint64) int64 { return int64(x) })
			}
		case num == 10 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			s.GPU = append(s.GPU, uint32(v))
		case num == 10 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				s.GPU, err = appendPackedVarints(s.GPU, v, func(x uint64) uint32 { return uint32(x) })
			}
		case num == 11 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				err = d.decodeMetric(v)
			}
		default:
			// Unknown fields (a newer agent's) and known fields of another wire type are skipped,
			// as proto.Unmarshal keeps them aside.
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return malformed("sample batch: %v", protowire.ParseError(n))
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func (d *SampleDecoder) decodeGPU(b []byte) error {
	var g GPU
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("sample batch: gpu: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var err error
		switch {
		case num == 1 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			g.Index = uint32(v)
		case num >= 2 && num <= 6 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				var str string
				if str, err = d.str(v); err == nil {
					switch num {
					case 2:
						g.UUID = str
					case 3:
						g.Model = str
					case 4:
						g.Serial = str
					case 5:
						g.PCIBusID = str
					case 6:
						g.JobID = str
					}
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return malformed("sample batch: gpu: %v", protowire.ParseError(n))
		}
		if err != nil {
			return err
		}
		b = b[n:]
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
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("sample batch: metric column: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var err error
		switch {
		case num == 1 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.ID = uint32(v)
		case num == 2 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				m.Present = append(m.Present[:0], v...)
			}
		case num == 3 && typ == protowire.Fixed64Type:
			var v uint64
			v, n = protowire.ConsumeFixed64(b)
			m.Values = append(m.Values, math.Float64frombits(v))
		case num == 3 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				if len(v)%8 != 0 {
					return malformed("sample batch: metric column: packed doubles of %d bytes", len(v))
				}
				for ; len(v) > 0; v = v[8:] {
					m.Values = append(m.Values, math.Float64frombits(binary.LittleEndian.Uint64(v)))
				}
			}
		case num == 4 && typ == protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			m.Counts = append(m.Counts, v)
		case num == 4 && typ == protowire.BytesType:
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n >= 0 {
				m.Counts, err = appendPackedVarints(m.Counts, v, func(x uint64) uint64 { return x })
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return malformed("sample batch: metric column: %v", protowire.ParseError(n))
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
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
		{"node", b.Node}, {"driver_version", b.DriverVersion}, {"cuda_version", b.CudaVersion}} {
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
			len(g.PCIBusID) > MaxLabelLen || len(g.JobID) > MaxLabelLen {
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
