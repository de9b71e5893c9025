// Package chserver is the ClickHouse server transport: clickhouse-go v2 over the native protocol.
// It sends the same SQL and the same store.Block as the embedded transport (store/chdb).
package chserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/backend/redact"
)

// Store is a store.Store on a ClickHouse server.
type Store struct {
	conn   driver.Conn
	db     string
	reader *readerSettings // nil for a store that writes; see OpenReader
}

// Open connects to the server named by dsn (clickhouse://user:password@host:9000/database).
// A non-nil tlsConfig speaks TLS (the server's secure native port, usually 9440) and replaces
// whatever the DSN's secure and skip_verify parameters asked for.
func Open(ctx context.Context, dsn string, tlsConfig *tls.Config) (*Store, error) {
	return open(ctx, dsn, tlsConfig, nil)
}

func open(ctx context.Context, dsn string, tlsConfig *tls.Config, reader *readerSettings) (*Store, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, dsnError(dsn, err)
	}
	if tlsConfig != nil {
		opts.TLS = tlsConfig
	}
	if opts.Auth.Database == "" {
		opts.Auth.Database = "gpufleet"
	}
	if err := store.CheckIdent("database", opts.Auth.Database); err != nil {
		return nil, err
	}
	db := opts.Auth.Database
	// Connect to "default" so that migrate can create the gpufleet database; every statement
	// qualifies its tables with db.
	opts.Auth.Database = "default"
	if reader != nil {
		opts.Auth.Database = db // unqualified names resolve in gpufleet's database, as on chDB
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse open: %w", err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cannot reach ClickHouse at %v: %w: check the clickhouse DSN's host and port and that the server is running", opts.Addr, err)
	}
	return &Store{conn: conn, db: db, reader: reader}, nil
}

// dsnError describes a DSN the driver refused without echoing the DSN's secrets. The driver's
// *url.Error carries the input (clickhouse-go masks its password, but its reason can quote part
// of a malformed one, as in `invalid port ":se"`), and its other errors quote parameter values:
// so the error is not wrapped, and its text is kept only when it holds none of the DSN's
// possible secrets.
func dsnError(dsn string, err error) error {
	detail := err.Error()
	if _, ok := errors.AsType[*url.Error](err); ok {
		detail = "not a valid URL: percent-encode special characters in the user name and password"
	}
	if redact.Leaks(detail, dsn) {
		detail = "invalid (details not shown: they may hold a password; percent-encode special characters in the user name, password and parameter values)"
	}
	return fmt.Errorf("clickhouse DSN %s: %s", redact.DSN(dsn), detail)
}

// Database implements store.Store.
func (s *Store) Database() string { return s.db }

// Exec implements store.Store.
func (s *Store) Exec(ctx context.Context, sql string) error {
	if s.reader != nil {
		return store.ErrReadOnly
	}
	if err := s.conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("clickhouse exec: %w", err)
	}
	return nil
}

// Query implements store.Store.
func (s *Store) Query(ctx context.Context, sql string) (*store.Result, error) {
	return s.QueryWith(ctx, sql, nil)
}

// QueryWith implements store.Store with the native protocol's query parameters.
func (s *Store) QueryWith(ctx context.Context, sql string, params store.Params) (*store.Result, error) {
	return s.query(ctx, sql, params, s.reader != nil)
}

// query runs sql; limited sends the reader's limits and readonly = 1 with it.
func (s *Store) query(ctx context.Context, sql string, params store.Params, limited bool) (*store.Result, error) {
	var read atomic.Uint64
	opts := []clickhouse.QueryOption{clickhouse.WithProgress(func(p *clickhouse.Progress) { read.Add(p.Rows) })}
	if limited {
		opts = append(opts, clickhouse.WithSettings(s.reader.read))
	}
	if len(params) > 0 {
		opts = append(opts, clickhouse.WithParameters(clickhouse.Parameters(params)))
	}
	ctx = clickhouse.Context(ctx, opts...)
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("clickhouse query: %w", err)
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	res := &store.Result{Columns: rows.Columns()}
	for _, ct := range types {
		res.Types = append(res.Types, ct.DatabaseTypeName())
	}
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, fmt.Errorf("clickhouse scan: %w", err)
		}
		row := make([]any, len(ptrs))
		for i, p := range ptrs {
			row[i] = normalize(reflect.ValueOf(p).Elem())
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse rows: %w", err)
	}
	res.RowsRead = read.Load()
	return res, nil
}

// normalize maps scanned values to the types store.Result promises.
func normalize(v reflect.Value) any {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.Float32, reflect.Float64:
		return v.Float()
	case reflect.String:
		return v.String()
	}
	if t, ok := v.Interface().(time.Time); ok {
		return t.UTC().Format("2006-01-02 15:04:05.000")
	}
	return fmt.Sprint(v.Interface())
}

// Insert implements store.Store with a native-protocol batch, column by column.
func (s *Store) Insert(ctx context.Context, table string, b *store.Block, dedupToken string) error {
	if s.reader != nil {
		return store.ErrReadOnly
	}
	if b.Rows() == 0 {
		return nil
	}
	// The same settings chDB puts in its statement; clickhouse-go keeps only "INSERT INTO t (cols)" of
	// the query text, so they go with the query instead.
	settings := clickhouse.Settings{}
	for _, st := range store.InsertSettings(dedupToken) {
		settings[st.Name] = st.Value
	}
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(settings))
	batch, err := s.conn.PrepareBatch(ctx, store.InsertSQL(s.db, table, b, "", nil))
	if err != nil {
		return fmt.Errorf("insert into %s: prepare: %w", table, err)
	}
	bp, _ := nativeBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	err = appendBlock(batch.Columns(), b, bp)
	nativeBufs.Put(bp)
	if err != nil {
		batch.Abort()
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", b.Rows(), table, err)
	}
	return nil
}

// nativeBufs holds the buffers appendBlock encodes columns into: blocks of a steady stream are of
// similar size, so a reused one spares growing a new one through every power of two.
var nativeBufs sync.Pool

// appendBlock fills the driver's columns of a fresh batch (in the INSERT's column order) with the
// block. A column whose table type is the block column's own goes as the block's Native encoding
// (the bytes chDB inserts) read by the driver column's own decoder: that is the driver's only way
// in without a value per row, since its Append takes Nullable values as a []*T (a pointer per row)
// and LowCardinality values one boxed row at a time through reflection and a map[any]int. Columns
// the table types otherwise (a String block column into LowCardinality(String): the events,
// intents and gaps blocks) go through Append, which converts. scratch is reused for the encoding.
func appendBlock(dst []column.Interface, b *store.Block, scratch *[]byte) error {
	if len(dst) != len(b.Columns) {
		return fmt.Errorf("the batch has %d columns, the block %d", len(dst), len(b.Columns))
	}
	native := (*scratch)[:0]
	decode := make([]bool, len(dst))
	for i, c := range b.Columns {
		d := dst[i]
		if d.Name() != c.Name() {
			return fmt.Errorf("column %d: the batch's is %s, the block's %s", i, d.Name(), c.Name())
		}
		// The column decoders of ch-go overwrite rather than append (they size the column to the
		// rows being read), so only an empty one may be decoded into; the batch's are.
		if c.Len() > 0 && d.Rows() == 0 && string(d.Type()) == c.Type() {
			native = c.AppendNative(native)
			decode[i] = true
			continue
		}
		if _, err := d.Append(columnValues(c)); err != nil {
			return fmt.Errorf("column %s (%s into %s): %w", c.Name(), c.Type(), d.Type(), err)
		}
	}
	*scratch = native
	// One reader for all the columns: each proto.Reader holds a 128 KiB read buffer.
	r := proto.NewReader(bytes.NewReader(native))
	for i, c := range b.Columns {
		if !decode[i] {
			continue
		}
		d := dst[i]
		// The order of the driver's own block decoder: the state prefix (LowCardinality's key
		// version), then the data.
		if p, ok := d.(column.CustomSerialization); ok {
			if err := p.ReadStatePrefix(r); err != nil {
				return fmt.Errorf("column %s: read %s state prefix: %w", c.Name(), c.Type(), err)
			}
		}
		if err := d.Decode(r, c.Len()); err != nil {
			return fmt.Errorf("column %s: decode %s: %w", c.Name(), c.Type(), err)
		}
		if d.Rows() != c.Len() {
			return fmt.Errorf("column %s: %s decoded into %d rows, the block has %d", c.Name(), c.Type(), d.Rows(), c.Len())
		}
	}
	// Every column's encoding read to its end, no further: a byte left means one was read short.
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("the driver's decoders left part of the block's %d bytes of Native encoding unread", len(native))
	}
	return nil
}

// columnValues converts a block column to the slice type clickhouse-go's Append takes, for a
// table column of another type than the block's.
func columnValues(c store.Column) any {
	switch c := c.(type) {
	case *store.ColDateTime64:
		out := make([]time.Time, len(c.V))
		for i, ms := range c.V {
			out[i] = time.UnixMilli(ms).UTC()
		}
		return out
	case *store.ColString:
		return c.V
	case *store.ColLowCardString:
		out := make([]string, len(c.Keys))
		for i, k := range c.Keys {
			out[i] = c.Dict[k]
		}
		return out
	case *store.ColUInt8:
		return c.V
	case *store.ColUInt32:
		return c.V
	case *store.ColUInt64:
		return c.V
	case *store.ColInt64:
		return c.V
	case *store.ColNullFloat32:
		out := make([]*float32, len(c.V))
		for i := range c.V {
			if c.Null[i] == 0 {
				out[i] = &c.V[i]
			}
		}
		return out
	case store.As:
		return columnValues(c.Column)
	case *store.ColFloat64:
		return c.V
	case *store.ColDateTime:
		out := make([]time.Time, len(c.V))
		for i, s := range c.V {
			out[i] = time.Unix(int64(s), 0).UTC()
		}
		return out
	case *store.ColUInt128:
		out := make([]*big.Int, len(c.V))
		for i, v := range c.V {
			out[i] = new(big.Int).Or(new(big.Int).Lsh(new(big.Int).SetUint64(v.Hi), 64), new(big.Int).SetUint64(v.Lo))
		}
		return out
	case *store.ColNullUInt64:
		out := make([]*uint64, len(c.V))
		for i := range c.V {
			if c.Null[i] == 0 {
				out[i] = &c.V[i]
			}
		}
		return out
	}
	panic(fmt.Sprintf("chserver: no conversion for column type %T", c)) // a programming error, not input
}

// Close implements store.Store.
func (s *Store) Close() error { return s.conn.Close() }
