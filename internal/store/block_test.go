package store

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// cat joins byte groups so that expected encodings read section by section.
func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestBlockAppendNative(t *testing.T) {
	tinyBlock := func() *Block {
		util := &ColNullFloat32{ColName: "util"}
		util.Append(0, true)
		util.Append(1.5, false)
		energy := &ColNullUInt64{ColName: "energy"}
		energy.Append(7, false)
		energy.Append(0, true)
		return &Block{Columns: []Column{
			&ColDateTime64{ColName: "time", V: []int64{1_700_000_000_000, 1_700_000_000_001}},
			&ColString{ColName: "node", V: []string{"a", "bé"}},
			&ColUInt8{ColName: "gpu", V: []uint8{0, 255}},
			&ColUInt32{ColName: "pid", V: []uint32{1, 0x01020304}},
			&ColUInt64{ColName: "seq", V: []uint64{1, math.MaxUint64}},
			util,
			energy,
		}}
	}
	manyRows := &ColUInt8{ColName: "g", V: make([]uint8, 300)}
	for i := range manyRows.V {
		manyRows.V[i] = uint8(i)
	}
	longName := strings.Repeat("c", 130)

	tests := []struct {
		name  string
		block *Block
		want  []byte
	}{
		{
			name:  "no columns",
			block: &Block{},
			want:  []byte{0x00, 0x00},
		},
		{
			name:  "columns without rows",
			block: &Block{Columns: []Column{&ColString{ColName: "s"}}},
			want:  cat([]byte{0x01, 0x00}, []byte{0x01, 's'}, []byte{0x06}, []byte("String")),
		},
		{
			name:  "tiny block, every column type",
			block: tinyBlock(),
			want: cat(
				[]byte{0x07, 0x02}, // 7 columns, 2 rows
				// time DateTime64(3, 'UTC'): Int64 little endian
				[]byte{0x04}, []byte("time"), []byte{0x14}, []byte("DateTime64(3, 'UTC')"),
				[]byte{0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00},
				[]byte{0x01, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00},
				// node String: varint length + bytes ("é" is two bytes)
				[]byte{0x04}, []byte("node"), []byte{0x06}, []byte("String"),
				[]byte{0x01, 'a', 0x03, 'b', 0xc3, 0xa9},
				// gpu UInt8
				[]byte{0x03}, []byte("gpu"), []byte{0x05}, []byte("UInt8"),
				[]byte{0x00, 0xff},
				// pid UInt32
				[]byte{0x03}, []byte("pid"), []byte{0x06}, []byte("UInt32"),
				[]byte{0x01, 0x00, 0x00, 0x00, 0x04, 0x03, 0x02, 0x01},
				// seq UInt64
				[]byte{0x03}, []byte("seq"), []byte{0x06}, []byte("UInt64"),
				[]byte{0x01, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
				// util Nullable(Float32): null map, then every value (NULL rows included)
				[]byte{0x04}, []byte("util"), []byte{0x11}, []byte("Nullable(Float32)"),
				[]byte{0x01, 0x00},
				[]byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x3f}, // 0, 1.5
				// energy Nullable(UInt64)
				[]byte{0x06}, []byte("energy"), []byte{0x10}, []byte("Nullable(UInt64)"),
				[]byte{0x00, 0x01},
				[]byte{0x07, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			),
		},
		{
			name:  "row count and name length over 127 take two varint bytes",
			block: &Block{Columns: []Column{&ColUInt32{ColName: longName, V: make([]uint32, 300)}}},
			want: cat([]byte{0x01, 0xac, 0x02}, // 300 = 0b10_0101100
				[]byte{0x82, 0x01}, []byte(longName), // 130
				[]byte{0x06}, []byte("UInt32"), make([]byte, 300*4)),
		},
		{
			name:  "300 UInt8 rows",
			block: &Block{Columns: []Column{manyRows}},
			want: func() []byte {
				data := make([]byte, 300)
				for i := range data {
					data[i] = byte(i % 256)
				}
				return cat([]byte{0x01, 0xac, 0x02, 0x01, 'g', 0x05}, []byte("UInt8"), data)
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.block.AppendNative(nil)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("AppendNative =\n% x\nwant\n% x", got, tt.want)
			}
			// Appending keeps what dst already holds.
			prefix := []byte("hdr")
			got2 := tt.block.AppendNative(append([]byte(nil), prefix...))
			if !bytes.Equal(got2, cat(prefix, tt.want)) {
				t.Errorf("AppendNative after a prefix did not keep the prefix or changed the encoding")
			}
		})
	}
}

func TestBlockRowsNamesAndReset(t *testing.T) {
	tm := &ColDateTime64{ColName: "time"}
	node := &ColString{ColName: "node"}
	gpu := &ColUInt8{ColName: "gpu"}
	pid := &ColUInt32{ColName: "pid"}
	seq := &ColUInt64{ColName: "seq"}
	code := &ColInt64{ColName: "code"}
	util := &ColNullFloat32{ColName: "util"}
	energy := &ColNullUInt64{ColName: "energy"}
	b := &Block{Columns: []Column{tm, node, gpu, pid, seq, code, util, energy}}

	if got := (&Block{}).Rows(); got != 0 {
		t.Errorf("empty block Rows = %d", got)
	}
	if got := b.Rows(); got != 0 {
		t.Errorf("block of empty columns Rows = %d", got)
	}
	wantNames := []string{"time", "node", "gpu", "pid", "seq", "code", "util", "energy"}
	if got := strings.Join(b.ColumnNames(), ","); got != strings.Join(wantNames, ",") {
		t.Errorf("ColumnNames = %s", got)
	}

	fill := func(n int) {
		for i := range n {
			tm.V = append(tm.V, int64(i))
			node.V = append(node.V, "n")
			gpu.V = append(gpu.V, uint8(i))
			pid.V = append(pid.V, uint32(i))
			seq.V = append(seq.V, uint64(i))
			code.V = append(code.V, -int64(i))
			util.Append(float32(i), i%2 == 0)
			energy.Append(uint64(i), i%3 == 0)
		}
	}
	fill(100)
	if got := b.Rows(); got != 100 {
		t.Fatalf("Rows = %d, want 100", got)
	}
	for _, c := range b.Columns {
		if c.Len() != 100 {
			t.Errorf("column %s Len = %d, want 100", c.Name(), c.Len())
		}
	}
	if util.Null[0] != 1 || util.Null[1] != 0 || energy.Null[3] != 1 || energy.Null[4] != 0 {
		t.Errorf("Append null flags wrong: util %v energy %v", util.Null[:5], energy.Null[:5])
	}

	type capOf struct {
		name string
		cap  func() int
		len  func() int
	}
	caps := []capOf{
		{"time", func() int { return cap(tm.V) }, func() int { return len(tm.V) }},
		{"node", func() int { return cap(node.V) }, func() int { return len(node.V) }},
		{"gpu", func() int { return cap(gpu.V) }, func() int { return len(gpu.V) }},
		{"pid", func() int { return cap(pid.V) }, func() int { return len(pid.V) }},
		{"seq", func() int { return cap(seq.V) }, func() int { return len(seq.V) }},
		{"code", func() int { return cap(code.V) }, func() int { return len(code.V) }},
		{"util.V", func() int { return cap(util.V) }, func() int { return len(util.V) }},
		{"util.Null", func() int { return cap(util.Null) }, func() int { return len(util.Null) }},
		{"energy.V", func() int { return cap(energy.V) }, func() int { return len(energy.V) }},
		{"energy.Null", func() int { return cap(energy.Null) }, func() int { return len(energy.Null) }},
	}
	before := make([]int, len(caps))
	for i, c := range caps {
		before[i] = c.cap()
	}
	firstTime := &tm.V[0]

	b.Reset()
	if got := b.Rows(); got != 0 {
		t.Errorf("Rows after Reset = %d", got)
	}
	for i, c := range caps {
		if c.len() != 0 {
			t.Errorf("%s len after Reset = %d", c.name, c.len())
		}
		if c.cap() != before[i] {
			t.Errorf("%s cap after Reset = %d, want %d", c.name, c.cap(), before[i])
		}
	}
	if got := b.AppendNative(nil); !bytes.Equal(got[:2], []byte{0x08, 0x00}) {
		t.Errorf("reset block header = % x, want 08 00", got[:2])
	}

	// Refilling up to the old size reuses the same backing arrays.
	fill(100)
	if &tm.V[0] != firstTime {
		t.Error("refill after Reset reallocated the time column")
	}
	for i, c := range caps {
		if c.cap() != before[i] {
			t.Errorf("%s cap after refill = %d, want %d", c.name, c.cap(), before[i])
		}
	}
	if b.Rows() != 100 {
		t.Errorf("Rows after refill = %d", b.Rows())
	}
}
