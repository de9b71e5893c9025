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

// ColFloat64 is Float64.
type ColFloat64 struct {
	ColName string
	V       []float64
}

func (c *ColFloat64) Name() string { return c.ColName }
func (c *ColFloat64) Type() string { return "Float64" }
func (c *ColFloat64) Len() int     { return len(c.V) }
func (c *ColFloat64) Reset()       { c.V = c.V[:0] }
func (c *ColFloat64) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// ColDateTime is DateTime('UTC'): seconds since the Unix epoch.
type ColDateTime struct {
	ColName string
	V       []uint32
}

func (c *ColDateTime) Name() string { return c.ColName }
func (c *ColDateTime) Type() string { return "DateTime('UTC')" }
func (c *ColDateTime) Len() int     { return len(c.V) }
func (c *ColDateTime) Reset()       { c.V = c.V[:0] }
func (c *ColDateTime) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

// UInt128 is an unsigned 128-bit number in two halves.
type UInt128 struct{ Hi, Lo uint64 }

// Less orders UInt128s as numbers.
func (u UInt128) Less(v UInt128) bool { return u.Hi < v.Hi || u.Hi == v.Hi && u.Lo < v.Lo }

// ColUInt128 is UInt128 (the rollups' packed readings).
type ColUInt128 struct {
	ColName string
	V       []UInt128
}

func (c *ColUInt128) Name() string { return c.ColName }
func (c *ColUInt128) Type() string { return "UInt128" }
func (c *ColUInt128) Len() int     { return len(c.V) }
func (c *ColUInt128) Reset()       { c.V = c.V[:0] }
func (c *ColUInt128) AppendNative(b []byte) []byte {
	for _, v := range c.V {
		b = binary.LittleEndian.AppendUint64(b, v.Lo)
		b = binary.LittleEndian.AppendUint64(b, v.Hi)
	}
	return b
}

// As is Column sent as the table's type TypeName, whose Native encoding is Column's own: a
// SimpleAggregateFunction(f, T) column is encoded as T. Both transports then take it as it is,
// without a conversion (chDB) or a value per row (the server's driver).
type As struct {
	Column
	TypeName string
}

func (a As) Type() string { return a.TypeName }

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

// ColLowCardString is LowCardinality(String), sent dictionary-encoded: each distinct value once per
// block and a small integer per row. Fleet labels (cluster, node, GPU UUID, model, job) repeat on
// every row, so this is a fraction of the bytes of String and spares the server building the
// dictionary itself.
type ColLowCardString struct {
	ColName string
	Dict    []string // distinct values in first-seen order
	Keys    []uint32 // per row, an index into Dict
	index   map[string]uint32
}

func (c *ColLowCardString) Name() string { return c.ColName }
func (c *ColLowCardString) Type() string { return "LowCardinality(String)" }
func (c *ColLowCardString) Len() int     { return len(c.Keys) }

// Reset empties the column and its dictionary, keeping capacity.
func (c *ColLowCardString) Reset() {
	c.Dict, c.Keys = c.Dict[:0], c.Keys[:0]
	clear(c.index)
}

// Key returns v's dictionary index, adding v when new. Callers appending one value to many rows
// look it up once and use AppendKey.
func (c *ColLowCardString) Key(v string) uint32 {
	if k, ok := c.index[v]; ok {
		return k
	}
	if c.index == nil {
		c.index = map[string]uint32{}
	}
	k := uint32(len(c.Dict))
	c.Dict = append(c.Dict, v)
	c.index[v] = k
	return k
}

// Append adds one row.
func (c *ColLowCardString) Append(v string) { c.Keys = append(c.Keys, c.Key(v)) }

// AppendKey adds one row holding the value Key returned k for.
func (c *ColLowCardString) AppendKey(k uint32) { c.Keys = append(c.Keys, k) }

// AppendKeyN adds n rows holding the value of key k.
func (c *ColLowCardString) AppendKeyN(k uint32, n int) {
	c.Keys = slices.Grow(c.Keys, n)
	for range n {
		c.Keys = append(c.Keys, k)
	}
}

// Value returns row i's string.
func (c *ColLowCardString) Value(i int) string { return c.Dict[c.Keys[i]] }

// Low-cardinality serialization (ClickHouse SerializationLowCardinality, as ch-go writes it): a
// state prefix with the key serialization version, then per block the flags and key width, the
// dictionary as a String column, and the keys.
const (
	lowCardSharedDictionariesWithAdditionalKeys = 1
	lowCardHasAdditionalKeys                    = 1 << 9
	lowCardNeedUpdateDictionary                 = 1 << 10
)

func (c *ColLowCardString) AppendNative(b []byte) []byte {
	b = binary.LittleEndian.AppendUint64(b, lowCardSharedDictionariesWithAdditionalKeys)
	if len(c.Keys) == 0 {
		return b
	}
	var width uint64 // 0: UInt8, 1: UInt16, 2: UInt32
	switch n := len(c.Dict); {
	case n > math.MaxUint16+1:
		width = 2
	case n > math.MaxUint8+1:
		width = 1
	}
	b = binary.LittleEndian.AppendUint64(b, lowCardHasAdditionalKeys|lowCardNeedUpdateDictionary|width)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(c.Dict)))
	for _, v := range c.Dict {
		b = appendString(b, v)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(len(c.Keys)))
	switch width {
	case 0:
		for _, k := range c.Keys {
			b = append(b, uint8(k))
		}
	case 1:
		for _, k := range c.Keys {
			b = binary.LittleEndian.AppendUint16(b, uint16(k))
		}
	default:
		for _, k := range c.Keys {
			b = binary.LittleEndian.AppendUint32(b, k)
		}
	}
	return b
}
