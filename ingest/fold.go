package ingest

import (
	"fmt"
	"math"
	"slices"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// A materialized view aggregates only the block it is given, and a live fleet's block holds a few
// readings per GPU: gpu_1m_mv writes a row of some 300 aggregates per GPU per block, and those
// rows, not the aggregation, are what it costs (docs/rollups.md, BenchmarkRollupPartials). Every
// gpu_1m column is a plain sum, count, min or max, so ingest can fold a partition's rows over many
// blocks itself and insert one partial row per GPU-minute instead. minuteFold is that fold: given
// the same rows, it makes what gpu_1m_mv makes, column for column (TestMinuteFoldEqualsTheView).

// foldKey is gpu_1m's key: the minute and the level's dims, in schema.Levels' order.
type foldKey struct {
	minute                                      int64 // Unix seconds of the minute's start
	cluster, node, uuid, model, job, rack, pool string
}

// blockKey is a foldKey within one block: its labels as the block's dictionary keys, which spares
// hashing seven strings for every row.
type blockKey struct {
	minute                                      int64
	cluster, node, uuid, model, job, rack, pool uint32
}

// minuteFold holds gpu_1m's partial rows of the rows added so far, one per foldKey. Aggregates are
// kept per row and metric in flat slices (row*len(metrics)+slot).
type minuteFold struct {
	gauges, counters []int // registry positions of the rolled-up metrics, by kind
	index            map[foldKey]int32
	keys             []foldKey
	samples          []uint64
	first            []int64 // earliest sample time, Unix ms

	gSum         []float64
	gN           []uint64
	gMin, gMax   []float32
	gLast        []store.UInt128
	cMin, cMax   []uint64
	cN           []uint64
	cFirst, cLst []store.UInt128

	byBlock map[blockKey]int32 // scratch: the rows of the block being added
	rowOf   []int32            // scratch: per block row, its fold row
}

// foldable reports whether gpu_1m, as schema.Levels describes it, is made of aggregates minuteFold
// makes (plain ones, no t-digest or argMin/argMax state); a future level that is not makes ingest
// leave the rollup to the view.
func foldable(l schema.Level) error {
	if l.Digests || !l.Packed || !l.Counters || !l.LastGauges || !l.CounterReadings || !l.CounterValues || l.From != schema.GPUSamples || l.FoldBit == 0 {
		return fmt.Errorf("ingest: %s is not made of plain aggregates only; it cannot be folded in ingest", l.Table)
	}
	want := []string{"cluster", "node", "uuid", "model", "job_id", "rack", "pool"}
	if fmt.Sprint(l.Dims) != fmt.Sprint(want) {
		return fmt.Errorf("ingest: %s has dims %v, the fold makes %v", l.Table, l.Dims, want)
	}
	return nil
}

// minuteLevel is gpu_1m's level.
func minuteLevel() schema.Level {
	for _, l := range schema.Levels {
		if l.Table == schema.GPU1m {
			return l
		}
	}
	panic("ingest: schema.Levels has no " + schema.GPU1m) // a programming error
}

func newMinuteFold() *minuteFold {
	f := &minuteFold{index: map[foldKey]int32{}, byBlock: map[blockKey]int32{}}
	for i, m := range gpumetric.All() {
		if i >= schema.Covered {
			break
		}
		if m.Kind.Integer() {
			f.counters = append(f.counters, i)
		} else {
			f.gauges = append(f.gauges, i)
		}
	}
	return f
}

// foldRowBytes is about what one partial row costs a minuteFold: its aggregates, its key and the
// map entry that finds it.
func foldRowBytes() int {
	f := newMinuteFold()
	return len(f.gauges)*(8+8+4+4+16) + len(f.counters)*(8+8+8+16+16) + 8 + 8 + 8 + 2*(8+7*16)
}

// Rows is the number of partial rows held.
func (f *minuteFold) Rows() int { return len(f.keys) }

// reset empties the fold, keeping capacity.
func (f *minuteFold) reset() {
	clear(f.index)
	f.keys, f.samples, f.first = f.keys[:0], f.samples[:0], f.first[:0]
	f.gSum, f.gN, f.gMin, f.gMax, f.gLast = f.gSum[:0], f.gN[:0], f.gMin[:0], f.gMax[:0], f.gLast[:0]
	f.cMin, f.cMax, f.cN, f.cFirst, f.cLst = f.cMin[:0], f.cMax[:0], f.cN[:0], f.cFirst[:0], f.cLst[:0]
}

// row returns k's row, making an empty one when new.
func (f *minuteFold) row(k foldKey) int32 {
	if r, ok := f.index[k]; ok {
		return r
	}
	r := int32(len(f.keys))
	f.index[k] = r
	f.keys = append(f.keys, k)
	f.samples = append(f.samples, 0)
	f.first = append(f.first, math.MaxInt64)
	ng, nc := len(f.gauges), len(f.counters)
	f.gSum = append(f.gSum, make([]float64, ng)...)
	f.gN = append(f.gN, make([]uint64, ng)...)
	f.gMin = append(f.gMin, make([]float32, ng)...)
	f.gMax = append(f.gMax, make([]float32, ng)...)
	f.gLast = append(f.gLast, make([]store.UInt128, ng)...)
	f.cMin = append(f.cMin, make([]uint64, nc)...)
	f.cMax = append(f.cMax, make([]uint64, nc)...)
	f.cN = append(f.cN, make([]uint64, nc)...)
	for range nc {
		f.cFirst = append(f.cFirst, store.UInt128{Hi: math.MaxUint64, Lo: math.MaxUint64})
	}
	f.cLst = append(f.cLst, make([]store.UInt128, nc)...)
	return r
}

// packed is a reading as schema.Reading and schema.LastGaugeReading pack it: the flag in bit 127,
// the time in Unix ms in bits 64–126, the value's bits below.
func packed(flag bool, ms int64, value uint64) store.UInt128 {
	hi := uint64(ms)
	if flag {
		hi |= 1 << 63
	}
	return store.UInt128{Hi: hi, Lo: value}
}

// add folds every row of c in.
func (f *minuteFold) add(c *sampleColumns) {
	n := c.block.Rows()
	if n == 0 {
		return
	}
	clear(f.byBlock)
	f.rowOf = f.rowOf[:0]
	for i := range n {
		ms := c.time.V[i]
		bk := blockKey{minute: floorDiv(ms, 60_000) * 60, cluster: c.cluster.Keys[i], node: c.node.Keys[i], uuid: c.uuid.Keys[i],
			model: c.model.Keys[i], job: c.job.Keys[i], rack: c.rack.Keys[i], pool: c.pool.Keys[i]}
		r, ok := f.byBlock[bk]
		if !ok {
			r = f.row(foldKey{minute: bk.minute, cluster: c.cluster.Dict[bk.cluster], node: c.node.Dict[bk.node], uuid: c.uuid.Dict[bk.uuid],
				model: c.model.Dict[bk.model], job: c.job.Dict[bk.job], rack: c.rack.Dict[bk.rack], pool: c.pool.Dict[bk.pool]})
			f.byBlock[bk] = r
		}
		f.rowOf = append(f.rowOf, r)
		f.samples[r]++
		f.first[r] = min(f.first[r], ms)
	}
	ng, nc := len(f.gauges), len(f.counters)
	for j, pos := range f.gauges {
		col := c.gauges[pos]
		for i, r := range f.rowOf {
			at := int(r)*ng + j
			ms := c.time.V[i]
			if col.Null[i] != 0 {
				if p := packed(false, ms, 0); f.gLast[at].Less(p) {
					f.gLast[at] = p
				}
				continue
			}
			v := col.V[i]
			if f.gN[at] == 0 {
				f.gMin[at], f.gMax[at] = v, v
			} else {
				f.gMin[at], f.gMax[at] = min(f.gMin[at], v), max(f.gMax[at], v)
			}
			f.gN[at]++
			f.gSum[at] += float64(v)
			if p := packed(true, ms, uint64(math.Float32bits(v))); f.gLast[at].Less(p) {
				f.gLast[at] = p
			}
		}
	}
	for j, pos := range f.counters {
		col := c.counters[pos]
		for i, r := range f.rowOf {
			at := int(r)*nc + j
			ms := c.time.V[i]
			null := col.Null[i] != 0
			var v uint64
			if !null {
				v = col.V[i]
				if f.cN[at] == 0 {
					f.cMin[at], f.cMax[at] = v, v
				} else {
					f.cMin[at], f.cMax[at] = min(f.cMin[at], v), max(f.cMax[at], v)
				}
				f.cN[at]++
			}
			if p := packed(null, ms, v); p.Less(f.cFirst[at]) {
				f.cFirst[at] = p
			}
			if p := packed(!null, ms, v); f.cLst[at].Less(p) {
				f.cLst[at] = p
			}
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func simpleAgg(f string, c store.Column) store.Column {
	return store.As{Column: c, TypeName: "SimpleAggregateFunction(" + f + ", " + c.Type() + ")"}
}

// block returns the rows held as a gpu_1m block, with each column as its table type.
func (f *minuteFold) block() *store.Block {
	rows := len(f.keys)
	t := &store.ColDateTime{ColName: "t", V: make([]uint32, 0, rows)}
	dims := make([]*store.ColLowCardString, 7)
	for i, d := range []string{"cluster", "node", "uuid", "model", "job_id", "rack", "pool"} {
		dims[i] = &store.ColLowCardString{ColName: d}
	}
	samples := &store.ColUInt64{ColName: "samples", V: slices.Clone(f.samples)}
	first := &store.ColDateTime64{ColName: schema.FirstSample, V: slices.Clone(f.first)}
	b := &store.Block{Columns: []store.Column{t}}
	for _, d := range dims {
		b.Columns = append(b.Columns, d)
	}
	b.Columns = append(b.Columns, simpleAgg("sum", samples), simpleAgg("min", first))
	for _, k := range f.keys {
		t.V = append(t.V, uint32(k.minute))
		for i, v := range []string{k.cluster, k.node, k.uuid, k.model, k.job, k.rack, k.pool} {
			dims[i].Append(v)
		}
	}
	all := gpumetric.All()
	ng, nc := len(f.gauges), len(f.counters)
	for j, pos := range f.gauges {
		m := all[pos].Column
		sum := &store.ColFloat64{ColName: schema.Sum(m), V: make([]float64, rows)}
		cnt := &store.ColUInt64{ColName: schema.N(m), V: make([]uint64, rows)}
		lo := &store.ColNullFloat32{ColName: schema.MinCol(m)}
		hi := &store.ColNullFloat32{ColName: schema.MaxCol(m)}
		last := &store.ColUInt128{ColName: schema.LastReading(m), V: make([]store.UInt128, rows)}
		for r := range rows {
			at := r*ng + j
			sum.V[r], cnt.V[r], last.V[r] = f.gSum[at], f.gN[at], f.gLast[at]
			lo.Append(f.gMin[at], f.gN[at] == 0)
			hi.Append(f.gMax[at], f.gN[at] == 0)
		}
		b.Columns = append(b.Columns, simpleAgg("sum", sum), simpleAgg("sum", cnt), simpleAgg("min", lo), simpleAgg("max", hi), simpleAgg("max", last))
	}
	for j, pos := range f.counters {
		m := all[pos].Column
		lo := &store.ColNullUInt64{ColName: schema.MinCol(m)}
		hi := &store.ColNullUInt64{ColName: schema.MaxCol(m)}
		cnt := &store.ColUInt64{ColName: schema.N(m), V: make([]uint64, rows)}
		firstR := &store.ColUInt128{ColName: schema.FirstReading(m), V: make([]store.UInt128, rows)}
		lastR := &store.ColUInt128{ColName: schema.LastReading(m), V: make([]store.UInt128, rows)}
		for r := range rows {
			at := r*nc + j
			cnt.V[r], firstR.V[r], lastR.V[r] = f.cN[at], f.cFirst[at], f.cLst[at]
			lo.Append(f.cMin[at], f.cN[at] == 0)
			hi.Append(f.cMax[at], f.cN[at] == 0)
		}
		b.Columns = append(b.Columns, simpleAgg("min", lo), simpleAgg("max", hi), simpleAgg("sum", cnt), simpleAgg("min", firstR), simpleAgg("max", lastR))
	}
	return b
}
