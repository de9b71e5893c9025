// Package chdb runs gpufleet's SQL on the ClickHouse engine in-process (chDB), loading libchdb.so
// at the first Open so that binaries which never use it (the agent) do not need it.
//
// libchdb holds one engine per process with one data directory, so this package keeps a single
// process-wide connection shared by every Store opened on the same directory; tests isolate by
// database name, not by directory. A lock file keeps a second process off a directory in use.
package chdb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/gpufleet/gpufleet/store"
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
	bufs sync.Pool // *[]byte, Native encoding buffers
	// qmu serialises statements on the one connection: the engine does not promise a connection is
	// safe for concurrent queries, and SET param_… must stay next to the query that uses it.
	qmu  sync.Mutex
	lib  *library
	dir  string
	conn *unsafe.Pointer // chdb_connection* from chdb_connect: points at the handle queries take
	refs int
	lock *os.File
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
	closed bool
}

// Open opens (creating if needed) the data directory dir and database db. libPath overrides the
// library search (Candidates).
func Open(dir, db, libPath string) (*Store, error) {
	if err := store.CheckIdent("database", db); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("chdb data directory %q: %w", dir, err)
	}
	mu.Lock()
	if eng == nil {
		e, err := start(abs, libPath)
		if err != nil {
			mu.Unlock()
			return nil, err
		}
		eng = e
	} else if eng.dir != abs {
		mu.Unlock()
		return nil, fmt.Errorf("chdb: this process already has data directory %s open; chDB holds one per process", eng.dir)
	}
	eng.refs++
	s := &Store{db: db, e: eng}
	mu.Unlock()
	if err := s.Exec(context.Background(), "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		s.Close()
		return nil, err
	}
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
	args := []string{"gpufleet", "--path=" + dir}
	argv := make([]*byte, len(args))
	bufs := make([][]byte, len(args))
	for i, a := range args {
		bufs[i] = append([]byte(a), 0)
		argv[i] = &bufs[i][0]
	}
	saved := saveCrashHandlers()
	conn := lib.connect(int32(len(args)), argv)
	saved.restore()
	if conn == nil || *conn == nil {
		lock.Close()
		return nil, fmt.Errorf("chdb: connect to %s failed (see the engine's log above)", dir)
	}
	return &engine{lib: lib, dir: dir, conn: conn, lock: lock}, nil
}

// Database implements store.Store.
func (s *Store) Database() string { return s.db }

// raw runs one statement and returns the engine's output in format.
func (s *Store) raw(ctx context.Context, query []byte, format string) ([]byte, error) {
	s.e.qmu.Lock()
	defer s.e.qmu.Unlock()
	return s.rawLocked(ctx, query, format)
}

func (s *Store) rawLocked(ctx context.Context, query []byte, format string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := s.e
	if s.closed {
		return nil, errors.New("chdb: store is closed")
	}
	if len(query) == 0 {
		return nil, errors.New("chdb: empty query")
	}
	f := []byte(format + "\x00")
	res := e.lib.queryN(*e.conn, &query[0], uintptr(len(query)), &f[0], uintptr(len(format)))
	if res == nil {
		return nil, errors.New("chdb: query returned no result")
	}
	defer e.lib.destroyResult(res)
	if p := e.lib.resultError(res); p != nil {
		if msg := cString(p); msg != "" {
			return nil, fmt.Errorf("chdb: %s", strings.TrimSpace(msg))
		}
	}
	n := e.lib.resultLength(res)
	if n == 0 {
		return nil, nil
	}
	return append([]byte(nil), unsafe.Slice(e.lib.resultBuffer(res), n)...), nil
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
	_, err := s.raw(ctx, []byte(sql), "TabSeparated")
	return err
}

// Query implements store.Store.
func (s *Store) Query(ctx context.Context, sql string) (*store.Result, error) {
	out, err := s.raw(ctx, []byte(sql), "JSONCompact")
	if err != nil {
		return nil, err
	}
	return store.ParseJSONCompact(out)
}

// QueryWith implements store.Store: each parameter is set in the session (as a quoted literal the
// engine parses and then casts to the placeholder's type) right before the query, under one lock.
func (s *Store) QueryWith(ctx context.Context, sql string, params store.Params) (*store.Result, error) {
	s.e.qmu.Lock()
	defer s.e.qmu.Unlock()
	for _, name := range params.Names() {
		if err := store.CheckIdent("query parameter", name); err != nil {
			return nil, err
		}
		if _, err := s.rawLocked(ctx, []byte("SET param_"+name+" = "+store.QuoteString(params[name])), "TabSeparated"); err != nil {
			return nil, fmt.Errorf("set query parameter %s: %w", name, err)
		}
	}
	out, err := s.rawLocked(ctx, []byte(sql), "JSONCompact")
	if err != nil {
		return nil, err
	}
	return store.ParseJSONCompact(out)
}

// Insert implements store.Store: the block travels as Native data inline in the INSERT.
func (s *Store) Insert(ctx context.Context, table string, b *store.Block, dedupToken string) error {
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
	eng.refs--
	if eng.refs == 0 {
		eng.lib.closeConn(eng.conn)
		eng.lock.Close()
		eng = nil
	}
}
