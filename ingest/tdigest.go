package ingest

import (
	"encoding/binary"
	"math"
)

// ClickHouse's quantilesTDigest state, made in Go, so that ingest can fold gpu_1h's digests with
// its other columns (fold.go) instead of gpu_1h_mv adding every reading to a digest per GPU per
// block. tdigest follows the engine's QuantileTDigest step for step (Float32 centroids, epsilon
// 0.01, at most 2048 centroids, a compression after 2048 unmerged additions and before
// serializing), so that the state of a run of readings is the one the engine makes of the same
// readings in the same order, byte for byte (TestTDigestStateIsTheEngines), and merges in the
// table exactly as the view's states do. A hand-rolled digest would give other centroids, and
// with them other percentiles: merging equal readings into one centroid, for one, moves a median
// that the engine's singletons keep on a reading.

const (
	tdigestEpsilon      = float32(0.01)
	tdigestMaxCentroids = 2048
	tdigestMaxUnmerged  = 2048
)

type centroid struct{ mean, count float32 }

// tdigest is one digest being made; reset it to make the next.
type tdigest struct {
	c        []centroid
	count    float64
	unmerged int
	tmp      []centroid // the sort's scratch
}

// sortCentroids sorts c by mean as the engine does, an LSD radix sort of sortKey, a byte at a time
// (stable: equal means keep their order), using tmp, which it returns grown to len(c).
func sortCentroids(c, tmp []centroid) []centroid {
	if len(c) < 2 {
		return tmp
	}
	if len(c) <= 64 {
		// A fold's digest of one GPU-hour holds a few dozen readings, where four radix passes over
		// 256 counters cost more than the readings; an insertion sort is as stable.
		for i := 1; i < len(c); i++ {
			x, k := c[i], sortKey(c[i].mean)
			j := i
			for ; j > 0 && sortKey(c[j-1].mean) > k; j-- {
				c[j] = c[j-1]
			}
			c[j] = x
		}
		return tmp
	}
	if cap(tmp) < len(c) {
		tmp = make([]centroid, len(c))
	}
	tmp = tmp[:len(c)]
	src, dst := c, tmp
	for shift := uint(0); shift < 32; shift += 8 {
		var counts [256]int
		for _, x := range src {
			counts[byte(sortKey(x.mean)>>shift)]++
		}
		if counts[byte(sortKey(src[0].mean)>>shift)] == len(src) {
			continue // every key has this byte: the pass would change nothing
		}
		pos := 0
		for i, n := range counts {
			counts[i] = pos
			pos += n
		}
		for _, x := range src {
			b := byte(sortKey(x.mean) >> shift)
			dst[counts[b]] = x
			counts[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &c[0] {
		copy(c, src)
	}
	return tmp
}

func (d *tdigest) reset() { d.c, d.count, d.unmerged = d.c[:0], 0, 0 }

// add adds a reading; NaN is no reading, as the engine takes it.
func (d *tdigest) add(v float32) {
	if v != v {
		return
	}
	d.c = append(d.c, centroid{v, 1})
	d.count++
	if d.unmerged++; d.unmerged > tdigestMaxUnmerged {
		d.compress()
	}
}

// sortKey orders Float32s as the engine's radix sort does: by their bits with the sign flipped
// (negatives' bits inverted), so -0 sorts before +0.
func sortKey(v float32) uint32 {
	b := math.Float32bits(v)
	if b&(1<<31) != 0 {
		return ^b
	}
	return b | 1<<31
}

func canBeMerged(lMean float64, rMean float32) bool {
	return lMean == float64(rMean) || (!math.IsInf(lMean, 0) && !math.IsInf(float64(rMean), 0))
}

// compress merges neighbouring centroids while their joint count stays within 4·q·(1-q)·ε·N.
func (d *tdigest) compress() {
	if d.unmerged > 0 || len(d.c) > tdigestMaxCentroids {
		d.tmp = sortCentroids(d.c, d.tmp)
		count4 := d.count * float64(tdigestEpsilon) * 4
		var sum float64
		l := 0
		lMean, lCount := float64(d.c[0].mean), float64(d.c[0].count)
		for r := 1; r < len(d.c); r++ {
			rc := d.c[r]
			ql := (sum + lCount*0.5) / d.count
			e := ql * (1 - ql)
			qr := (sum + lCount + float64(rc.count)*0.5) / d.count
			if e2 := qr * (1 - qr); e > e2 {
				e = e2
			}
			if lCount+float64(rc.count) <= count4*e && canBeMerged(lMean, rc.mean) {
				lCount += float64(rc.count)
				if float64(rc.mean) != lMean {
					lMean += float64(rc.count) * (float64(rc.mean) - lMean) / lCount
				}
				d.c[l] = centroid{float32(lMean), float32(lCount)}
			} else {
				sum += float64(d.c[l].count)
				l++
				if l != r {
					d.c[l] = rc
				}
				lMean, lCount = float64(d.c[l].mean), float64(d.c[l].count)
			}
		}
		d.count = sum + lCount
		d.c = d.c[:l+1]
		d.unmerged = 0
	}
	d.compressBrute()
}

// compressBrute merges batches of neighbours when compress left more than the maximum.
func (d *tdigest) compressBrute() {
	if len(d.c) <= tdigestMaxCentroids {
		return
	}
	batch := (len(d.c) + tdigestMaxCentroids - 1) / tdigestMaxCentroids
	var sum float64
	l := 0
	lMean, lCount := float64(d.c[0].mean), float64(d.c[0].count)
	pos := 0
	for r := 1; r < len(d.c); r++ {
		rc := d.c[r]
		if pos < batch-1 {
			lCount += float64(rc.count)
			if float64(rc.mean) != lMean {
				lMean += float64(rc.count) * (float64(rc.mean) - lMean) / lCount
			}
			d.c[l] = centroid{float32(lMean), float32(lCount)}
			pos++
			continue
		}
		if m := d.c[l].mean; m == m {
			sum += float64(d.c[l].count)
			l++
		}
		d.c[l] = rc
		lMean, lCount = float64(rc.mean), float64(rc.count)
		pos = 0
	}
	if m := d.c[l].mean; m == m {
		d.count = sum + lCount
		d.c = d.c[:l+1]
	} else {
		d.count = sum
		d.c = d.c[:l]
	}
}

// appendState compresses the digest and appends its state as the engine serializes
// quantilesTDigest over Nullable(Float32): a byte the Null combinator writes (1, also for a digest
// of no readings), the number of centroids as a varint, then each centroid's Float32 mean and
// count, little-endian.
func (d *tdigest) appendState(dst []byte) []byte {
	if len(d.c) > 0 {
		d.compress()
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(len(d.c)))
	for _, c := range d.c {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(c.mean))
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(c.count))
	}
	return dst
}
