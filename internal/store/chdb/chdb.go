// Package chdb runs gpufleet's SQL on the ClickHouse engine in-process (chDB), loading libchdb.so
// at the first Open so that binaries which never use it (the agent) do not need it.
//
// libchdb holds one engine per process with one data directory, so this package keeps a single
// process-wide connection shared by every Store opened on the same directory; tests isolate by
// database name, not by directory. A lock file keeps a second process off a directory in use.
package chdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gpufleet/gpufleet/internal/store"
)

// LibEnv names the environment variable that points at libchdb.so.
const LibEnv = "GPUFLEET_LIBCHDB"

// ErrLibraryMissing reports that libchdb.so could not be loaded.
var ErrLibraryMissing = errors.New("libchdb.so not found")

type library struct {
	connect       func(argc int32, argv []*byte) *unsafe.Pointer // chdb_connection*
	closeConn     func(conn *unsafe.Pointer)
	queryN        func(conn unsafe.Pointer, query *byte, queryLen uintptr, format *byte, formatLen uintptr) unsafe.Pointer
	resultBuffer  func(res unsafe.Pointer) *byte
	resultLength  func(res unsafe.Pointer) uintptr
	resultError   func(res unsafe.Pointer) *byte
	destroyResult func(res unsafe.Pointer)
}

// engine is the process's one chDB engine. Guarded by mu; see the package comment for why it is global.
type engine struct {
	bufs   sync.Pool // *[]byte, Native encoding buffers
	lib    *library
	dir    string
	config string // the configuration file every connection names (engineConfig)
	main   *conn  // the writers' connection, shared by every Store from Open
	// control parses statements for ParseSelect and kills cancelled reads; readonly = 2 (reads and
	// EXPLAIN, never a user's statement itself). Opened at first use, under mu.
	control *conn
	refs    int
	lock    *os.File
}

// conn is one chdb_connection. Each has a session of its own (settings, parameters), so a reader's
// readonly = 1 does not touch the writers'.
type conn struct {
	// mu serialises statements on the connection: the engine does not promise a connection is safe
	// for concurrent queries, and SET param_… must stay next to the query that uses it.
	mu  sync.Mutex
	ptr *unsafe.Pointer // chdb_connection* from chdb_connect: points at the handle queries take
}

var (
	mu  sync.Mutex
	eng *engine
)

// Candidates lists where Open looks for the library when libPath is empty, in order.
func Candidates() []string {
	var c []string
	if p := os.Getenv(LibEnv); p != "" {
		c = append(c, p)
	}
	if exe, err := os.Executable(); err == nil {
		c = append(c, filepath.Join(filepath.Dir(exe), "libchdb.so"))
	}
	c = append(c, "/usr/local/lib/libchdb.so", "/usr/lib/libchdb.so")
	return append(c, "libchdb.so") // the dynamic loader's own search (LD_LIBRARY_PATH)
}

func load(libPath string) (*library, error) {
	paths := Candidates()
	if libPath != "" {
		paths = []string{libPath}
	}
	var h uintptr
	var errs []string
	for _, p := range paths {
		if strings.Contains(p, "/") {
			if _, err := os.Stat(p); err != nil {
				errs = append(errs, p+": not found")
				continue
			}
		}
		var err error
		h, err = purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			break
		}
		errs = append(errs, fmt.Sprintf("%s: %v", p, err))
	}
	if h == 0 {
		return nil, fmt.Errorf("%w (tried %s): run deploy/dev/chdb.sh install and set %s to the path it prints",
			ErrLibraryMissing, strings.Join(errs, "; "), LibEnv)
	}
	l := &library{}
	for name, fn := range map[string]any{
		"chdb_connect": &l.connect, "chdb_close_conn": &l.closeConn, "chdb_query_n": &l.queryN,
		"chdb_result_buffer": &l.resultBuffer, "chdb_result_length": &l.resultLength,
		"chdb_result_error": &l.resultError, "chdb_destroy_query_result": &l.destroyResult,
	} {
		if _, err := purego.Dlsym(h, name); err != nil {
			return nil, fmt.Errorf("libchdb.so lacks %s (too old? gpufleet needs chDB 3.x / 26.x): %w", name, err)
		}
		purego.RegisterLibFunc(fn, h, name)
	}
	return l, nil
}

// Store is a store.Store on the in-process engine.
type Store struct {
	db     string
	e      *engine
	c      *conn
	reader bool // own connection, readonly = 1 with limits: see OpenReader
	closed bool
}

// Open opens (creating if needed) the data directory dir and database db. libPath overrides the
// library search (Candidates).
func Open(dir, db, libPath string) (*Store, error) {
	if err := store.CheckIdent("database", db); err != nil {
		return nil, err
	}
	s, err := attach(dir, libPath, true)
	if err != nil {
		return nil, err
	}
	s.db = db
	if err := s.Exec(context.Background(), "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenReader opens database db of the existing data directory dir on a connection of its own that
// can only read: its session takes lim's settings and then readonly = 1, after which no statement
// can write, change a setting or read a file through a table function. It creates nothing: a
// missing directory or database is an error saying to run migrate.
func OpenReader(dir, db, libPath string, lim store.Limits) (*Store, error) {
	if err := store.CheckIdent("database", db); err != nil {
		return nil, err
	}
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	s, err := attach(dir, libPath, false)
	if err != nil {
		return nil, err
	}
	s.db, s.reader = db, true
	ctx := context.Background()
	r, err := s.QueryWith(ctx, "SELECT count() FROM system.databases WHERE name = {db:String}", store.Params{"db": db})
	if err != nil {
		s.Close()
		return nil, err
	}
	if len(r.Rows) != 1 || r.Rows[0][0] != uint64(1) {
		s.Close()
		return nil, fmt.Errorf("%w: database %s does not exist in chDB directory %s: run `gpufleet migrate` on it first", store.ErrNoSchema, db, s.e.dir)
	}
	var set strings.Builder
	for _, st := range lim.Settings() {
		if st.Name == "readonly" {
			continue // last, on its own: after it the session changes nothing
		}
		if set.Len() > 0 {
			set.WriteString(", ")
		}
		set.WriteString(st.Name + " = " + st.Value)
	}
	for _, q := range []string{"USE " + db, "SET " + set.String(), "SET readonly = 1"} {
		if _, err := s.c.run(ctx, s.e, []byte(q), "TabSeparated"); err != nil {
			s.Close()
			return nil, fmt.Errorf("chdb reader session: %w", err)
		}
	}
	// Trust but verify: a session that is not read-only is not handed out.
	if r, err := s.Query(ctx, "SELECT getSetting('readonly')"); err != nil || len(r.Rows) != 1 || fmt.Sprint(r.Rows[0][0]) != "1" {
		s.Close()
		return nil, fmt.Errorf("chdb reader session: readonly did not take effect (%v)", err)
	}
	return s, nil
}

// attach starts the engine on dir (creating dir only when create) or joins it, and returns a store
// on the writers' connection (writer) or on a new connection of its own.
func attach(dir, libPath string, writer bool) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("chdb data directory %q: %w", dir, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if eng == nil {
		if !writer {
			if _, err := os.Stat(filepath.Join(abs, "metadata")); err != nil {
				return nil, fmt.Errorf("%w: no chDB data directory at %s: run `gpufleet migrate` on it first", store.ErrNoSchema, abs)
			}
		}
		e, err := start(abs, libPath)
		if err != nil {
			return nil, err
		}
		eng = e
	} else if eng.dir != abs {
		return nil, fmt.Errorf("chdb: this process already has data directory %s open; chDB holds one per process", eng.dir)
	}
	s := &Store{e: eng, c: eng.main}
	if !writer {
		c, err := eng.connect()
		if err != nil {
			if eng.refs == 0 {
				eng.shutdown()
			}
			return nil, err
		}
		s.c = c
	}
	eng.refs++
	return s, nil
}

func start(dir, libPath string) (*engine, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chdb data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".gpufleet.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("chdb data directory lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("chdb data directory %s is in use by another process: stop it (e.g. the running demo) or use another directory", dir)
	}
	lib, err := load(libPath)
	if err != nil {
		lock.Close()
		return nil, err
	}
	e := &engine{lib: lib, dir: dir, lock: lock}
	if e.config, err = engineConfig(dir); err != nil {
		lock.Close()
		return nil, err
	}
	saved := saveCrashHandlers()
	e.main, err = e.connect()
	saved.restore()
	if err != nil {
		lock.Close()
		return nil, err
	}
	return e, nil
}

// ConfigFile is the embedded engine's configuration in its data directory (a clickhouse-local
// config.xml: remote_servers, users_config, …), created empty when missing. Without one named, the
// engine reads config.xml from the process's working directory, so that a gpufleet started in a
// directory holding some ClickHouse server's configuration ran with that server's settings.
const ConfigFile = "config.xml"

// engineConfig returns the path of dir's ConfigFile, creating it empty if it is missing.
func engineConfig(dir string) (string, error) {
	path := filepath.Join(dir, ConfigFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	switch {
	case errors.Is(err, os.ErrExist):
		return path, nil
	case err != nil:
		return "", fmt.Errorf("chdb configuration: %w", err)
	}
	_, err = f.WriteString("<!-- The embedded ClickHouse engine's configuration (clickhouse-local), read when gpufleet opens this directory. -->\n<clickhouse></clickhouse>\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("chdb configuration: %w", err)
	}
	return path, nil
}

// connect opens a connection to the engine's directory; the first boots the engine.
func (e *engine) connect() (*conn, error) {
	args := []string{"gpufleet", "--path=" + e.dir, "--config-file=" + e.config}
	argv := make([]*byte, len(args))
	bufs := make([][]byte, len(args))
	for i, a := range args {
		bufs[i] = append([]byte(a), 0)
		argv[i] = &bufs[i][0]
	}
	p := e.lib.connect(int32(len(args)), argv)
	if p == nil || *p == nil {
		return nil, fmt.Errorf("chdb: connect to %s failed (see the engine's log above)", e.dir)
	}
	return &conn{ptr: p}, nil
}

// controlConn returns the control connection, opening it at first use.
func (e *engine) controlConn() (*conn, error) {
	mu.Lock()
	defer mu.Unlock()
	if e.control != nil {
		return e.control, nil
	}
	c, err := e.connect()
	if err != nil {
		return nil, err
	}
	if _, err := c.run(context.Background(), e, []byte("SET readonly = 2"), "TabSeparated"); err != nil {
		e.lib.closeConn(c.ptr)
		return nil, fmt.Errorf("chdb control session: %w", err)
	}
	e.control = c
	return c, nil
}

// shutdown closes every connection and the engine with them. Under mu.
func (e *engine) shutdown() {
	if e.control != nil {
		e.lib.closeConn(e.control.ptr)
	}
	e.lib.closeConn(e.main.ptr)
	e.lock.Close()
	eng = nil
}

// Database implements store.Store.
func (s *Store) Database() string { return s.db }

// raw runs one statement on the store's connection and returns the engine's output in format.
func (s *Store) raw(ctx context.Context, query []byte, format string) ([]byte, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	var out []byte
	err := s.rawInto(ctx, query, format, func(b []byte) error {
		out = copyOut(b)
		return nil
	})
	return out, err
}

// rawInto runs one statement on the store's connection and hands the engine's output to use
// while it is still the engine's buffer; the caller holds s.c.mu.
func (s *Store) rawInto(ctx context.Context, query []byte, format string, use func([]byte) error) error {
	if s.closed {
		return errors.New("chdb: store is closed")
	}
	if !s.reader || ctx.Done() == nil {
		return s.c.runInto(ctx, s.e, query, format, use)
	}
	// A reader's statement is tagged so that a cancelled request can kill it from the control
	// connection: the engine would otherwise run it to the end (or to max_execution_time).
	var b [8]byte
	_, _ = rand.Read(b[:])
	tag := "/* gpufleet-q:" + hex.EncodeToString(b[:]) + " */ "
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
			s.e.kill(tag)
		}
	}()
	err := s.c.runInto(ctx, s.e, append([]byte(tag), query...), format, use)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// drain runs a statement whose output is thrown away: libchdb 26.5 keeps what a failed statement
// had written (a result cut short by max_result_rows, say) and puts it in front of the next
// statement's output on the connection.
func (c *conn) drain(e *engine) {
	q := []byte("SELECT 1")
	f := []byte("TabSeparated\x00")
	if res := e.lib.queryN(*c.ptr, &q[0], uintptr(len(q)), &f[0], uintptr(len(f)-1)); res != nil {
		e.lib.destroyResult(res)
	}
}

// kill cancels the running statement that starts with tag.
func (e *engine) kill(tag string) {
	c, err := e.controlConn()
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// tag is hex between fixed text: safe as a literal.
	_, _ = c.run(context.Background(), e, []byte("KILL QUERY WHERE startsWith(query, '"+tag+"') ASYNC"), "TabSeparated")
}

// run sends one statement on c and returns a copy of its output; the caller holds c.mu.
func (c *conn) run(ctx context.Context, e *engine, query []byte, format string) ([]byte, error) {
	var out []byte
	err := c.runInto(ctx, e, query, format, func(b []byte) error {
		out = copyOut(b)
		return nil
	})
	return out, err
}

func copyOut(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// runInto sends one statement on c and hands its output to use, which must not keep it: it is
// the engine's buffer, freed when runInto returns. Decoding a large answer from there spares the
// Go heap a copy of the engine's whole output. The caller holds c.mu.
func (c *conn) runInto(ctx context.Context, e *engine, query []byte, format string, use func([]byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(query) == 0 {
		return errors.New("chdb: empty query")
	}
	f := []byte(format + "\x00")
	res := e.lib.queryN(*c.ptr, &query[0], uintptr(len(query)), &f[0], uintptr(len(format)))
	if res == nil {
		return errors.New("chdb: query returned no result")
	}
	defer e.lib.destroyResult(res)
	if p := e.lib.resultError(res); p != nil {
		if msg := cString(p); msg != "" {
			c.drain(e)
			return fmt.Errorf("chdb: %s", strings.TrimSpace(msg))
		}
	}
	n := e.lib.resultLength(res)
	if n == 0 {
		return use(nil)
	}
	return use(unsafe.Slice(e.lib.resultBuffer(res), n))
}

func cString(p *byte) string {
	var n int
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// Exec implements store.Store.
func (s *Store) Exec(ctx context.Context, sql string) error {
	if s.reader {
		return store.ErrReadOnly
	}
	_, err := s.raw(ctx, []byte(sql), "TabSeparated")
	return err
}

// Query implements store.Store.
func (s *Store) Query(ctx context.Context, sql string) (*store.Result, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return decodeInto(ctx, []byte(sql), s.rawInto)
}

// decodeInto runs sql through run and decodes its JSONCompact output from the engine's buffer.
func decodeInto(ctx context.Context, sql []byte, run func(context.Context, []byte, string, func([]byte) error) error) (*store.Result, error) {
	var r *store.Result
	err := run(ctx, sql, "JSONCompact", func(b []byte) error {
		var err error
		r, err = store.ParseJSONCompact(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// QueryWith implements store.Store: each parameter is set in the session (as a quoted literal the
// engine parses and then casts to the placeholder's type) right before the query, under one lock.
func (s *Store) QueryWith(ctx context.Context, sql string, params store.Params) (*store.Result, error) {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return queryWith(ctx, sql, params, s.rawInto)
}

// queryWith sets params in the session, then runs sql, each through run (one statement on a
// connection whose lock the caller holds).
func queryWith(ctx context.Context, sql string, params store.Params, run func(context.Context, []byte, string, func([]byte) error) error) (*store.Result, error) {
	for _, name := range params.Names() {
		if err := store.CheckIdent("query parameter", name); err != nil {
			return nil, err
		}
		if err := run(ctx, []byte("SET param_"+name+" = "+store.QuoteString(params[name])), "TabSeparated", func([]byte) error { return nil }); err != nil {
			return nil, fmt.Errorf("set query parameter %s: %w", name, err)
		}
	}
	return decodeInto(ctx, []byte(sql), run)
}

// Insert implements store.Store: the block travels as Native data inline in the INSERT.
func (s *Store) Insert(ctx context.Context, table string, b *store.Block, dedupToken string) error {
	if s.reader {
		return store.ErrReadOnly
	}
	if b.Rows() == 0 {
		return nil
	}
	// Data inline after FORMAT Native is cut short by the engine past a few KiB, so the block goes
	// through a file that the engine reads with FROM INFILE.
	f, err := os.CreateTemp(s.e.dir, ".insert-*.native")
	if err != nil {
		return fmt.Errorf("insert into %s: %w", table, err)
	}
	defer os.Remove(f.Name())
	// Blocks of a steady stream are of similar size: reusing the last buffer saves growing a new
	// one through every power of two (tens of milliseconds for a 100k-row block).
	bp, _ := s.e.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := b.AppendNative((*bp)[:0])
	_, err = f.Write(buf)
	*bp = buf
	s.e.bufs.Put(bp)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("insert into %s: write block: %w", table, err)
	}
	q := store.InsertSQL(s.db, table, b, "FROM INFILE "+store.QuoteString(f.Name()), store.InsertSettings(dedupToken)) + " FORMAT Native"
	if err := s.Exec(ctx, q); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", b.Rows(), table, err)
	}
	return nil
}

// Close releases this store; the engine closes with the last one.
func (s *Store) Close() error {
	mu.Lock()
	defer mu.Unlock()
	s.closeLocked()
	return nil
}

func (s *Store) closeLocked() {
	if s.closed || eng == nil {
		return
	}
	s.closed = true
	if s.c != eng.main {
		s.c.mu.Lock() // a running statement finishes first
		eng.lib.closeConn(s.c.ptr)
		s.c.mu.Unlock()
	}
	eng.refs--
	if eng.refs == 0 {
		eng.shutdown()
	}
}

// ParseSelect implements store.Parser on the control connection: the statement is a bound
// parameter of formatQuery, and only the engine's canonical text of it reaches EXPLAIN AST.
func (s *Store) ParseSelect(ctx context.Context, sql string, params store.Params) (canonical, tree string, err error) {
	if s.closed {
		return "", "", errors.New("chdb: store is closed")
	}
	c, err := s.e.controlConn()
	if err != nil {
		return "", "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	run := func(ctx context.Context, q []byte, format string, use func([]byte) error) error {
		return c.runInto(ctx, s.e, q, format, use)
	}
	return store.ParseSelectWith(ctx, sql, params, func(ctx context.Context, q string, p store.Params) (*store.Result, error) {
		return queryWith(ctx, q, p, run)
	})
}
