package store

import (
	"encoding/binary"
	"math"
	"slices"
)

// Column is one column of a Block: typed values appended in place, reused across batches.
type Column interface {
	Name() string
	// Type is the ClickHouse type the values are encoded as.
	Type() string
	Len() int
	Reset()
	// AppendNative appends the column's data in ClickHouse Native format.
	AppendNative(b []byte) []byte
}

// Block is a set of equally long columns: the unit of insert for both transports.
type Block struct {
	Columns []Column
}

// Rows is the number of rows, taken from the first column.
func (b *Block) Rows() int {
	if len(b.Columns) == 0 {
		return 0
	}
	return b.Columns[0].Len()
}

// Reset empties every column, keeping capacity.
func (b *Block) Reset() {
	for _, c := range b.Columns {
		c.Reset()
	}
}

// ColumnNames lists the block's columns in order, for INSERT column lists.
func (b *Block) ColumnNames() []string {
	out := make([]string, len(b.Columns))
	for i, c := range b.Columns {
		out[i] = c.Name()
	}
	return out
}

// AppendNative encodes the block as one ClickHouse Native-format block (the format of
// `INSERT ... FORMAT Native` and Native files; client revision 0, so no per-column serialization
// byte).
func (b *Block) AppendNative(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b.Columns)))
	dst = binary.AppendUvarint(dst, uint64(b.Rows()))
	for _, c := range b.Columns {
		dst = appendString(dst, c.Name())
		dst = appendString(dst, c.Type())
		dst = c.AppendNative(dst)
	}
	return dst
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// ColDateTime64 is DateTime64(3, 'UTC'): milliseconds since the Unix epoch.
type ColDateTime64 struct {
	ColName string
	V       []int64
}

func (c *ColDateTime64) Name() string { return c.ColName }
func (c *ColDateTime64) Type() string { return "DateTime64(3, 'UTC')" }
func (c *ColDateTime64) Len() int     { return len(c.V) }
func (c *ColDateTime64) Reset()       { c.V = c.V[:0] }
func (c *ColDateTime64) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// ColString is String (LowCardinality columns accept it on insert).
type ColString struct {
	ColName string
	V       []string
}

func (c *ColString) Name() string { return c.ColName }
func (c *ColString) Type() string { return "String" }
func (c *ColString) Len() int     { return len(c.V) }
func (c *ColString) Reset()       { c.V = c.V[:0] }
func (c *ColString) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = appendString(b, v)
	}
	return b
}

// ColUInt8 is UInt8.
type ColUInt8 struct {
	ColName string
	V       []uint8
}

func (c *ColUInt8) Name() string                 { return c.ColName }
func (c *ColUInt8) Type() string                 { return "UInt8" }
func (c *ColUInt8) Len() int                     { return len(c.V) }
func (c *ColUInt8) Reset()                       { c.V = c.V[:0] }
func (c *ColUInt8) AppendNative(b []byte) []byte { return append(b, c.V...) }

// ColUInt32 is UInt32.
type ColUInt32 struct {
	ColName string
	V       []uint32
}

func (c *ColUInt32) Name() string { return c.ColName }
func (c *ColUInt32) Type() string { return "UInt32" }
func (c *ColUInt32) Len() int     { return len(c.V) }
func (c *ColUInt32) Reset()       { c.V = c.V[:0] }
func (c *ColUInt32) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// ColUInt64 is UInt64.
type ColUInt64 struct {
	ColName string
	V       []uint64
}

func (c *ColUInt64) Name() string { return c.ColName }
func (c *ColUInt64) Type() string { return "UInt64" }
func (c *ColUInt64) Len() int     { return len(c.V) }
func (c *ColUInt64) Reset()       { c.V = c.V[:0] }
func (c *ColUInt64) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// ColInt64 is Int64.
type ColInt64 struct {
	ColName string
	V       []int64
}

func (c *ColInt64) Name() string { return c.ColName }
func (c *ColInt64) Type() string { return "Int64" }
func (c *ColInt64) Len() int     { return len(c.V) }
func (c *ColInt64) Reset()       { c.V = c.V[:0] }
func (c *ColInt64) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// ColNullFloat32 is Nullable(Float32); Null[i] == 1 marks row i NULL (its V entry is ignored).
type ColNullFloat32 struct {
	ColName string
	V       []float32
	Null    []uint8
}

func (c *ColNullFloat32) Name() string { return c.ColName }
func (c *ColNullFloat32) Type() string { return "Nullable(Float32)" }
func (c *ColNullFloat32) Len() int     { return len(c.V) }
func (c *ColNullFloat32) Reset()       { c.V, c.Null = c.V[:0], c.Null[:0] }

// Append adds one row.
func (c *ColNullFloat32) Append(v float32, null bool) {
	c.V = append(c.V, v)
	c.Null = append(c.Null, b2u(null))
}

// AppendNulls adds n NULL rows.
func (c *ColNullFloat32) AppendNulls(n int) {
	c.V = append(c.V, make([]float32, n)...)
	c.Null = appendOnes(c.Null, n)
}
func (c *ColNullFloat32) AppendNative(b []byte) []byte {
	b = append(b, c.Null...)
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return b
}

// ColNullUInt64 is Nullable(UInt64); Null[i] == 1 marks row i NULL.
type ColNullUInt64 struct {
	ColName string
	V       []uint64
	Null    []uint8
}

func (c *ColNullUInt64) Name() string { return c.ColName }
func (c *ColNullUInt64) Type() string { return "Nullable(UInt64)" }
func (c *ColNullUInt64) Len() int     { return len(c.V) }
func (c *ColNullUInt64) Reset()       { c.V, c.Null = c.V[:0], c.Null[:0] }

// Append adds one row.
func (c *ColNullUInt64) Append(v uint64, null bool) {
	c.V = append(c.V, v)
	c.Null = append(c.Null, b2u(null))
}

// AppendNulls adds n NULL rows.
func (c *ColNullUInt64) AppendNulls(n int) {
	c.V = append(c.V, make([]uint64, n)...)
	c.Null = appendOnes(c.Null, n)
}

func appendOnes(b []uint8, n int) []uint8 {
	b = slices.Grow(b, n)
	for range n {
		b = append(b, 1)
	}
	return b
}
func (c *ColNullUInt64) AppendNative(b []byte) []byte {
	b = append(b, c.Null...)
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func b2u(v bool) uint8 {
	if v {
		return 1
	}
	return 0
}
