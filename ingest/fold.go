package ingest

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gpufleet/gpufleet/internal/gpumetric"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
)

// A materialized view aggregates only the block it is given, and a live fleet's block holds a few
// readings per GPU: gpu_1m_mv writes a row of some 300 aggregates per GPU per block, and those
// rows, not the aggregation, are what it costs (docs/rollups.md, BenchmarkRollupPartials). Every
// gpu_1m column is a plain sum, count, min or max, so ingest can fold a partition's rows over many
// blocks itself and insert one partial row per GPU-minute instead. gpu_1h is folded the same way,
// one partial row per GPU-hour per fold, its t-digests made as the engine's state (tdigest.go).
// A levelFold is that fold for one level: given the same rows, it makes what the level's view
// makes, column for column (TestLevelFoldsEqualTheViews).

// foldKey is a folded level's key: the bucket and the level's dims, in schema.Levels' order.
type foldKey struct {
	bucket                                      int64 // Unix seconds of the bucket's start
	cluster, node, uuid, model, job, rack, pool string
}

// blockKey is a foldKey within one block: its labels as the block's dictionary keys, which spares
// hashing seven strings for every row.
type blockKey struct {
	bucket                                      int64
	cluster, node, uuid, model, job, rack, pool uint32
}

// levelFold holds a level's partial rows of the rows added so far, one per foldKey. Aggregates are
// kept per row and metric in flat slices (row*len(metrics)+slot).
type levelFold struct {
	level            schema.Level
	stepMs           int64
	gauges, counters []int // registry positions of the rolled-up metrics, by kind (no counters on a level without)
	index            map[foldKey]int32
	keys             []foldKey
	samples          []uint64
	first            []int64 // earliest sample time, Unix ms

	gSum         []float64
	gN           []uint64
	gMin, gMax   []float32
	gLast        []store.UInt128
	gVals        [][]float32 // Digests: the readings, in the order added
	readings     int         // Float32s held in gVals
	cMin, cMax   []uint64
	cN           []uint64
	cFirst, cLst []store.UInt128

	byBlock map[blockKey]int32 // scratch: the rows of the block being added
	rowOf   []int32            // scratch: per block row, its fold row
	digest  tdigest            // scratch: the digest being serialized
	state   []byte
}

// foldDims are the dims a levelFold keys its rows by.
var foldDims = []string{"cluster", "node", "uuid", "model", "job_id", "rack", "pool"}

// foldable reports whether level l, as schema.Levels describes it, is made of aggregates a
// levelFold makes (plain ones, packed last readings, and t-digests sent through the level's
// feed), from gpu_samples, per minute or hour; a future level that is not makes ingest leave it
// to its view.
func foldable(l schema.Level) error {
	if l.From != schema.GPUSamples || !l.Packed || !l.LastGauges || l.FoldBit == 0 ||
		l.Counters && !(l.CounterReadings && l.CounterValues) || l.Digests && l.Feed == "" {
		return fmt.Errorf("ingest: %s is not made of aggregates ingest folds; it cannot be folded in ingest", l.Table)
	}
	if l.Step != time.Minute && l.Step != time.Hour {
		return fmt.Errorf("ingest: %s has step %v, the fold makes minutes and hours", l.Table, l.Step)
	}
	if fmt.Sprint(l.Dims) != fmt.Sprint(foldDims) {
		return fmt.Errorf("ingest: %s has dims %v, the fold makes %v", l.Table, l.Dims, foldDims)
	}
	return nil
}

// foldLevels are the levels ingest folds itself: those schema.Levels gives a FoldBit.
func foldLevels() []schema.Level {
	var out []schema.Level
	for _, l := range schema.Levels {
		if l.FoldBit != 0 {
			out = append(out, l)
		}
	}
	return out
}

// foldMask is the value of schema.FoldedColumn on the rows ingest folds: every folded level's bit.
func foldMask() uint8 {
	var m uint8
	for _, l := range foldLevels() {
		m |= l.FoldBit
	}
	return m
}

func newLevelFold(l schema.Level) *levelFold {
	f := &levelFold{level: l, stepMs: l.Step.Milliseconds(), index: map[foldKey]int32{}, byBlock: map[blockKey]int32{}}
	for i, m := range gpumetric.All() {
		if i >= schema.Covered {
			break
		}
		if !m.Kind.Integer() {
			f.gauges = append(f.gauges, i)
		} else if l.Counters {
			f.counters = append(f.counters, i)
		}
	}
	return f
}

// rowBytes is about what one partial row costs a levelFold: its aggregates, its key and the map
// entry that finds it (the readings a digest holds are counted apart: foldBytes).
func (f *levelFold) rowBytes() int {
	n := len(f.gauges)*(8+8+4+4+16) + len(f.counters)*(8+8+8+16+16) + 8 + 8 + 8 + 2*(8+7*16)
	if f.level.Digests {
		n += len(f.gauges) * 24
	}
	return n
}

// Rows is the number of partial rows held.
func (f *levelFold) Rows() int { return len(f.keys) }

// reset empties the fold, keeping capacity.
func (f *levelFold) reset() {
	clear(f.index)
	f.keys, f.samples, f.first = f.keys[:0], f.samples[:0], f.first[:0]
	f.gSum, f.gN, f.gMin, f.gMax, f.gLast = f.gSum[:0], f.gN[:0], f.gMin[:0], f.gMax[:0], f.gLast[:0]
	f.gVals, f.readings = f.gVals[:0], 0
	f.cMin, f.cMax, f.cN, f.cFirst, f.cLst = f.cMin[:0], f.cMax[:0], f.cN[:0], f.cFirst[:0], f.cLst[:0]
}

// row returns k's row, making an empty one when new.
func (f *levelFold) row(k foldKey) int32 {
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
	if f.level.Digests {
		// The readings' slices of a flushed fold's rows are reused, emptied.
		for range ng {
			if n := len(f.gVals); n < cap(f.gVals) {
				f.gVals = f.gVals[:n+1]
				f.gVals[n] = f.gVals[n][:0]
			} else {
				f.gVals = append(f.gVals, nil)
			}
		}
	}
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
func (f *levelFold) add(c *sampleColumns) {
	n := c.block.Rows()
	if n == 0 {
		return
	}
	clear(f.byBlock)
	f.rowOf = f.rowOf[:0]
	for i := range n {
		ms := c.time.V[i]
		bk := blockKey{bucket: floorDiv(ms, f.stepMs) * (f.stepMs / 1000), cluster: c.cluster.Keys[i], node: c.node.Keys[i], uuid: c.uuid.Keys[i],
			model: c.model.Keys[i], job: c.job.Keys[i], rack: c.rack.Keys[i], pool: c.pool.Keys[i]}
		r, ok := f.byBlock[bk]
		if !ok {
			r = f.row(foldKey{bucket: bk.bucket, cluster: c.cluster.Dict[bk.cluster], node: c.node.Dict[bk.node], uuid: c.uuid.Dict[bk.uuid],
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
			if f.level.Digests {
				f.gVals[at] = append(f.gVals[at], v)
				f.readings++
			}
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

// table is where the fold's rows are inserted: the level's feed, or its table.
func (f *levelFold) table() string { return cmp.Or(f.level.Feed, f.level.Table) }

// block returns the rows held as a block of table(), with each column as its type there.
func (f *levelFold) block() *store.Block {
	rows := len(f.keys)
	t := &store.ColDateTime{ColName: "t", V: make([]uint32, 0, rows)}
	dims := make([]*store.ColLowCardString, len(foldDims))
	for i, d := range foldDims {
		dims[i] = &store.ColLowCardString{ColName: d}
	}
	samples := &store.ColUInt64{ColName: "samples", V: slices.Clone(f.samples)}
	first := &store.ColDateTime64{ColName: schema.FirstSample, V: slices.Clone(f.first)}
	b := &store.Block{Columns: []store.Column{t}}
	for _, d := range dims {
		b.Columns = append(b.Columns, d)
	}
	b.Columns = append(b.Columns, simpleAgg("sum", samples))
	if f.level.Counters && f.level.CounterReadings {
		b.Columns = append(b.Columns, simpleAgg("min", first))
	}
	for _, k := range f.keys {
		t.V = append(t.V, uint32(k.bucket))
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
		if f.level.Digests {
			// The column's states are made into one buffer and one string, which each row's slices:
			// an allocation per column, not per row.
			q := &store.ColString{ColName: schema.Digest(m), V: make([]string, rows)}
			ends := make([]int, rows)
			f.state = f.state[:0]
			for r := range rows {
				f.digest.reset()
				for _, v := range f.gVals[r*ng+j] {
					f.digest.add(v)
				}
				f.state = f.digest.appendState(f.state)
				ends[r] = len(f.state)
			}
			all := string(f.state)
			for r, start := 0, 0; r < rows; r++ {
				q.V[r], start = all[start:ends[r]], ends[r]
			}
			b.Columns = append(b.Columns, q)
		}
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

// foldSet is one fold's partial rows of every level ingest folds (foldLevels), in that order.
type foldSet struct{ levels []*levelFold }

func newFoldSet() *foldSet {
	s := &foldSet{}
	for _, l := range foldLevels() {
		s.levels = append(s.levels, newLevelFold(l))
	}
	return s
}

func (s *foldSet) add(c *sampleColumns) {
	for _, f := range s.levels {
		f.add(c)
	}
}

// Rows is the partial rows held by the level holding most: the finest (gpu_1m), as a row of a
// coarser level folds at least one of its rows.
func (s *foldSet) Rows() int {
	n := 0
	for _, f := range s.levels {
		n = max(n, f.Rows())
	}
	return n
}

// Readings is the Float32s the digests hold, of every level.
func (s *foldSet) Readings() int {
	n := 0
	for _, f := range s.levels {
		n += f.readings
	}
	return n
}

func (s *foldSet) reset() {
	for _, f := range s.levels {
		f.reset()
	}
}

// foldValuesPerRow is how many digest readings the folds may hold per partial row they may hold
// (Config.FoldRows): a GPU-minute's at 1 Hz, for each gauge of each level with digests.
func foldValuesPerRow() int {
	n := 0
	for _, f := range newFoldSet().levels {
		if f.level.Digests {
			n += 60 * len(f.gauges)
		}
	}
	return n
}

// foldBytes bounds what folds holding rows partial rows (foldSet.Rows) and values digest readings
// cost, with the blocks of a flush: each row twice at every level's price, each reading as a
// Float32 held and as its centroid (8 bytes) in a state.
func foldBytes(rows, values int) int {
	row := 0
	for _, f := range newFoldSet().levels {
		row += f.rowBytes()
	}
	return 2*rows*row + 12*values
}
