// Package spool is the agent's bounded on-disk write-ahead log: every batch of messages is written
// here before it is sent, sent from here in order, and removed only after the brokers acknowledged
// it. While Kafka is unreachable the agent keeps sampling into the spool; after a restart it sends
// what the previous run left. When the spool reaches its size cap the oldest batches are dropped —
// the only way a sample taken is lost while the disk takes writes — and counted. When the disk
// refuses a write (full, or failing) the batch is held in memory, behind what is on disk, and sent
// from there; only what overflows that bounded memory is dropped, and counted apart.
package spool

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/gpufleet/gpufleet/internal/wire"
)

// Batch is what one send delivers: one cycle's messages and the sample rows they carry.
type Batch struct {
	Rows, Events uint64
	Msgs         []wire.Message
}

// Stats counts what the spool holds and has dropped.
type Stats struct {
	Batches uint64 // held (on disk and in memory), not yet acknowledged
	Bytes   uint64 // held on disk
	// MemoryBatches of Batches are held in memory because the disk refused them.
	MemoryBatches uint64
	// DroppedBatches and DroppedRows were dropped at the size cap since Open.
	DroppedBatches, DroppedRows uint64
	// UnspooledBatches and UnspooledRows were refused by the disk and dropped from the full memory
	// queue since Open.
	UnspooledBatches, UnspooledRows uint64
	// WriteErrors counts failed writes and fsyncs (segments and state) since Open.
	WriteErrors uint64
}

// Options configures a spool.
type Options struct {
	// MaxBytes caps what the spool keeps on disk; at least 1 MiB.
	MaxBytes int64
	// MemoryBytes caps the batches held in memory while the disk refuses writes; default 8 MiB.
	MemoryBytes int64
	// Logger gets one line when the disk starts refusing writes and one when it takes them again;
	// default discards.
	Logger *slog.Logger
}

// DefaultMemoryBytes is Options.MemoryBytes when it is zero: about an hour of one 8-GPU node at
// 1 s, while the disk is full and Kafka down.
const DefaultMemoryBytes = 8 << 20

// Spool is safe for one appender and one sender at a time; a lock file keeps a second process out
// of the same directory.
type Spool struct {
	dir                           string
	maxBytes, softBytes, segBytes int64
	memCap                        int64
	log                           *slog.Logger
	ops                           durability
	lock                          *os.File

	mu       sync.Mutex
	notEmpty chan struct{} // signalled (non-blocking) on every append
	segs     []int64       // segment numbers on disk, oldest first
	sizes    map[int64]int64
	head     position       // next batch to send from disk
	peeked   []peekedRecord // the disk records PeekN last returned, in order; nil after AckN
	tail     *os.File       // the segment being appended to; nil until the first append or after a failed cut
	tailSeg  int64
	held     uint64 // records on disk from head
	// mem holds, in order, batches the disk refused; they are newer than everything on disk, for
	// while mem holds any, new batches join it and only a flush of all of it, oldest first, goes to
	// disk. memPinned: PeekN returned mem[:memPinned] and they are being sent, so they stay where
	// they are.
	mem       []memBatch
	memBytes  int64
	memPinned int
	failing   bool // the last send failed: Kafka is not taking batches, so the cap is softBytes
	diskDown  bool // the last segment write failed
	stateDown bool // the last state save failed
	state     State
	st        Stats // the counters; Batches, Bytes and MemoryBatches are filled in by Stats
}

// peekedRecord is where a record PeekN returned lies, so that AckN can tell whether it is still
// the head's (the size cap may drop its segment while it is being sent).
type peekedRecord struct {
	seg, off, size int64
}

type memBatch struct {
	rec  []byte
	rows uint64
}

type position struct {
	Seg int64 `json:"seg"`
	Off int64 `json:"off"`
}

// State is small agent state that must survive restarts with the spool (the per-node sequence
// numbers, so that they keep increasing across restarts as ingest's gap detection expects).
type State struct {
	Head position          `json:"head"`
	Seq  map[string]uint64 `json:"seq"`
}

const stateFile = "state.json"

// parseState reads state.json. Anything it refuses leaves Open to start from the oldest segment.
func parseState(b []byte) (State, error) {
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("spool: %s: %w", stateFile, err)
	}
	if st.Head.Seg < 0 || st.Head.Off < 0 {
		return State{}, fmt.Errorf("spool: %s: head %d:%d is negative", stateFile, st.Head.Seg, st.Head.Off)
	}
	if st.Seq == nil {
		st.Seq = map[string]uint64{}
	}
	return st, nil
}

// Open opens or creates the spool in dir.
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes < 1<<20 {
		return nil, fmt.Errorf("spool: size cap %d bytes is under 1 MiB", opts.MaxBytes)
	}
	if opts.MemoryBytes < 0 {
		return nil, fmt.Errorf("spool: memory cap %d bytes is negative", opts.MemoryBytes)
	}
	if opts.MemoryBytes == 0 {
		opts.MemoryBytes = DefaultMemoryBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", dir, err)
	}
	segBytes := min(opts.MaxBytes/8, 16<<20)
	s := &Spool{dir: dir, maxBytes: opts.MaxBytes, softBytes: opts.MaxBytes - segBytes, segBytes: segBytes,
		memCap: opts.MemoryBytes, log: opts.Logger, ops: osDurability{}, lock: lock,
		notEmpty: make(chan struct{}, 1), sizes: map[int64]int64{}, state: State{Seq: map[string]uint64{}}}
	if err := s.load(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func (s *Spool) load() error {
	os.Remove(filepath.Join(s.dir, stateFile+".tmp")) // a save cut short; the state before it stands
	b, err := os.ReadFile(filepath.Join(s.dir, stateFile))
	switch {
	case err == nil:
		st, perr := parseState(b)
		if perr != nil {
			// Refusing to start would crash-loop the agent over a file it can do without: the
			// batches are resent from the oldest segment (ingest drops the repeats).
			s.log.Warn("spool state unreadable; sending every batch on disk again, sequence numbers restart",
				slog.String("dir", s.dir), slog.Any("err", perr))
			os.Rename(filepath.Join(s.dir, stateFile), filepath.Join(s.dir, stateFile+".corrupt"))
		} else {
			s.state = st
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("spool: %w", err)
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".seg"); ok {
			if seg, err := strconv.ParseInt(n, 10, 64); err == nil && seg >= 0 {
				s.segs = append(s.segs, seg)
			}
		}
	}
	slices.Sort(s.segs)
	s.head = s.state.Head
	// Segments wholly before the head were sent; a crash may have left them.
	for len(s.segs) > 0 && s.segs[0] < s.head.Seg {
		os.Remove(s.segPath(s.segs[0]))
		s.segs = s.segs[1:]
	}
	if len(s.segs) == 0 || s.head.Seg < s.segs[0] {
		next := s.head.Seg
		if len(s.segs) > 0 {
			next = s.segs[0]
		}
		s.head = position{Seg: next}
	}
	// Count what is held, and cut a torn record off the end of each segment.
	for _, seg := range s.segs {
		from := int64(0)
		if seg == s.head.Seg {
			if fi, err := os.Stat(s.segPath(seg)); err == nil && s.head.Off > fi.Size() {
				s.head.Off = fi.Size()
			}
			from = s.head.Off
		}
		n, _, end, err := s.scan(seg, from)
		if err != nil {
			return err
		}
		s.held += n
		s.sizes[seg] = end
		if err := os.Truncate(s.segPath(seg), end); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

func (s *Spool) segPath(seg int64) string { return filepath.Join(s.dir, fmt.Sprintf("%012d.seg", seg)) }

// record: u32 length of payload, u32 CRC-32C of payload, payload = u64 rows, u64 events, u32 message count,
// then per message u16 topic length, topic, u32 key length, key, u32 value length, value.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

const maxRecord = 256 << 20

func encode(b Batch) []byte {
	p := binary.LittleEndian.AppendUint64(nil, b.Rows)
	p = binary.LittleEndian.AppendUint64(p, b.Events)
	p = binary.LittleEndian.AppendUint32(p, uint32(len(b.Msgs)))
	for _, m := range b.Msgs {
		p = binary.LittleEndian.AppendUint16(p, uint16(len(m.Topic)))
		p = append(p, m.Topic...)
		p = binary.LittleEndian.AppendUint32(p, uint32(len(m.Key)))
		p = append(p, m.Key...)
		p = binary.LittleEndian.AppendUint32(p, uint32(len(m.Value)))
		p = append(p, m.Value...)
	}
	rec := binary.LittleEndian.AppendUint32(nil, uint32(len(p)))
	rec = binary.LittleEndian.AppendUint32(rec, crc32.Checksum(p, crcTable))
	return append(rec, p...)
}

var errTorn = errors.New("torn record")

// readRecord reads one record from r: the batch and the record's size. io.EOF at a clean end;
// any other error is a record torn by a crash or damaged on disk.
func readRecord(r io.Reader) (Batch, int64, error) { return readRecordWithin(r, -1) }

// readRecordWithin is readRecord where at most avail bytes can be left (the rest of a segment;
// -1: unknown). Within a known bound the payload is read in one allocation of its size: growing a
// buffer record after record made a 512 KiB request's read cost milliseconds under the lock
// appends wait for.
func readRecordWithin(r io.Reader, avail int64) (Batch, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return Batch{}, 0, io.EOF
		}
		return Batch{}, 0, errTorn
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	if n > maxRecord || (avail >= 0 && int64(n)+8 > avail) {
		return Batch{}, 0, errTorn
	}
	var p []byte
	var err error
	if avail >= 0 {
		p = make([]byte, n)
		_, err = io.ReadFull(r, p)
	} else {
		// Read through a limit rather than allocating n up front: a damaged length must not cost
		// 256 MiB of memory before the CRC refuses it.
		p, err = io.ReadAll(io.LimitReader(r, int64(n)))
	}
	if err != nil || len(p) != int(n) || crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
		return Batch{}, 0, errTorn
	}
	b, err := decode(p)
	if err != nil {
		return Batch{}, 0, errTorn
	}
	return b, int64(8 + n), nil
}

func decode(p []byte) (Batch, error) {
	bad := errors.New("short record")
	if len(p) < 20 {
		return Batch{}, bad
	}
	b := Batch{Rows: binary.LittleEndian.Uint64(p), Events: binary.LittleEndian.Uint64(p[8:])}
	count := binary.LittleEndian.Uint32(p[16:])
	p = p[20:]
	// Each message takes at least 10 bytes: a count beyond that is damage, not a reason to loop.
	if uint64(count)*10 > uint64(len(p)) {
		return Batch{}, bad
	}
	take := func(n int) ([]byte, bool) {
		if n < 0 || len(p) < n {
			return nil, false
		}
		v := p[:n:n]
		p = p[n:]
		return v, true
	}
	b.Msgs = make([]wire.Message, 0, count)
	for range count {
		var m wire.Message
		l, ok := take(2)
		if !ok {
			return Batch{}, bad
		}
		t, ok := take(int(binary.LittleEndian.Uint16(l)))
		if !ok {
			return Batch{}, bad
		}
		m.Topic = string(t)
		for _, dst := range []*[]byte{&m.Key, &m.Value} {
			l, ok := take(4)
			if !ok {
				return Batch{}, bad
			}
			if *dst, ok = take(int(binary.LittleEndian.Uint32(l))); !ok {
				return Batch{}, bad
			}
		}
		b.Msgs = append(b.Msgs, m)
	}
	return b, nil
}

// scan reads the whole records of seg from offset: how many, the sample rows they hold, and where
// the last one ends (a record torn by a crash mid-write is not counted).
func (s *Spool) scan(seg, from int64) (n, rows uint64, end int64, err error) {
	f, err := os.Open(s.segPath(seg))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return 0, 0, 0, fmt.Errorf("spool: %w", err)
	}
	r := bufio.NewReader(f)
	end = from
	for {
		b, size, err := readRecord(r)
		if err != nil {
			return n, rows, end, nil
		}
		n++
		rows += b.Rows
		end += size
	}
}

// Append writes b durably (fsync) behind everything held, dropping the oldest batches first if the
// cap would be exceeded; seq is saved with it. When the disk refuses the write, b is held in memory
// and sent from there; the disk is tried again with the next append.
func (s *Spool) Append(b Batch, seq map[string]uint64) {
	rec := encode(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	maps.Copy(s.state.Seq, seq)
	if s.flushMemLocked() {
		if err := s.writeLocked(rec); err != nil {
			s.diskFailedLocked(err)
			s.pushMemLocked(memBatch{rec: rec, rows: b.Rows})
		}
	} else {
		s.pushMemLocked(memBatch{rec: rec, rows: b.Rows})
	}
	s.enforceCapLocked()
	s.saveLocked()
	select {
	case s.notEmpty <- struct{}{}:
	default:
	}
}

// flushMemLocked writes the batches held in memory to disk, oldest first, and reports whether
// none is left, so that a new batch may go to disk behind them. Not while the oldest is being
// sent: a batch behind it on disk would be sent before it.
func (s *Spool) flushMemLocked() bool {
	if s.memPinned > 0 {
		return len(s.mem) == 0
	}
	for len(s.mem) > 0 {
		m := s.mem[0]
		if err := s.writeLocked(m.rec); err != nil {
			s.diskFailedLocked(err)
			return false
		}
		s.memBytes -= int64(len(m.rec))
		s.mem = slices.Delete(s.mem, 0, 1)
	}
	return true
}

// writeLocked appends one record to the tail segment and fsyncs it. On failure the segment is cut
// back to its last whole record, so that the next write lands right behind it.
func (s *Spool) writeLocked(rec []byte) error {
	if s.tail == nil || s.sizes[s.tailSeg] >= s.segBytes {
		if err := s.rollLocked(); err != nil {
			return err
		}
	}
	_, err := s.tail.Write(rec)
	if err == nil {
		err = s.ops.Sync(s.tail)
	}
	if err != nil {
		if terr := s.tail.Truncate(s.sizes[s.tailSeg]); terr != nil {
			// The partial record stays; readers stop at it, and the next write starts a new segment.
			s.tail.Close()
			s.tail = nil
		}
		return fmt.Errorf("spool: write %s: %w", s.segPath(s.tailSeg), err)
	}
	s.sizes[s.tailSeg] += int64(len(rec))
	s.held++
	if s.diskDown {
		s.diskDown = false
		s.log.Info("spool: the disk takes writes again", slog.String("dir", s.dir))
	}
	return nil
}

func (s *Spool) diskFailedLocked(err error) {
	s.st.WriteErrors++
	if !s.diskDown {
		s.diskDown = true
		s.log.Warn("spool: the disk refused a write; batches wait in memory (bounded) until it takes them again",
			slog.String("dir", s.dir), slog.Int64("memory_cap_bytes", s.memCap), slog.Any("err", err))
	}
}

// pushMemLocked queues m in memory; past the memory cap the oldest queued batch not being sent is
// dropped and counted.
func (s *Spool) pushMemLocked(m memBatch) {
	s.mem = append(s.mem, m)
	s.memBytes += int64(len(m.rec))
	first := s.memPinned
	for s.memBytes > s.memCap && len(s.mem) > first+1 {
		d := s.mem[first]
		s.st.UnspooledBatches++
		s.st.UnspooledRows += d.rows
		s.memBytes -= int64(len(d.rec))
		s.mem = slices.Delete(s.mem, first, first+1)
	}
}

func (s *Spool) rollLocked() error {
	if s.tail != nil {
		s.tail.Close()
		s.tail = nil
	}
	next := s.head.Seg
	if len(s.segs) > 0 {
		next = s.segs[len(s.segs)-1] + 1
	}
	// next is no segment held, so anything under its name is left over and may go.
	f, err := os.OpenFile(s.segPath(next), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	// The new name must be on disk before records in it are counted on.
	if err := s.ops.SyncDir(s.dir); err != nil {
		f.Close()
		os.Remove(s.segPath(next))
		return fmt.Errorf("spool: sync %s: %w", s.dir, err)
	}
	s.segs = append(s.segs, next)
	s.sizes[next] = 0
	s.tail, s.tailSeg = f, next
	return nil
}

// enforceCapLocked drops whole segments from the front, never the one being appended to. While
// sends fail the spool is held a segment under its cap, so that a restart (or Kafka's return)
// finds room for new batches before the first send has freed any: at the cap itself a batch is
// dropped only when Kafka cannot keep up.
func (s *Spool) enforceCapLocked() {
	limit := s.maxBytes
	if s.failing {
		limit = s.softBytes
	}
	for s.totalLocked() > limit && len(s.segs) > 1 {
		seg := s.segs[0]
		from := int64(0)
		if seg == s.head.Seg {
			from = s.head.Off
		}
		n, rows, _, _ := s.scan(seg, from) // an unreadable segment is dropped all the same
		s.st.DroppedBatches += n
		s.st.DroppedRows += rows
		s.held -= min(n, s.held)
		os.Remove(s.segPath(seg))
		delete(s.sizes, seg)
		s.segs = s.segs[1:]
		s.head = position{Seg: s.segs[0]}
	}
}

func (s *Spool) totalLocked() int64 {
	var t int64
	for _, seg := range s.segs {
		t += s.sizes[seg]
	}
	return t - s.head.Off
}

// saveLocked writes state.json atomically and durably: a temporary file, fsynced, renamed over the
// old one, then the directory fsynced, so that after a power loss the file is the old state or
// the new one, never empty, and never older than the segments it names. A failure is counted and
// retried with the next save; the state in memory stays right.
func (s *Spool) saveLocked() {
	s.state.Head = s.head
	b, err := json.Marshal(s.state)
	if err == nil {
		err = s.writeState(b)
	}
	if err != nil {
		s.st.WriteErrors++
		if !s.stateDown {
			s.stateDown = true
			s.log.Warn("spool: cannot save its state; retrying with every batch", slog.String("dir", s.dir), slog.Any("err", err))
		}
		return
	}
	if s.stateDown {
		s.stateDown = false
		s.log.Info("spool: state saved again", slog.String("dir", s.dir))
	}
}

func (s *Spool) writeState(b []byte) error {
	tmp := filepath.Join(s.dir, stateFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("spool: save state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = s.ops.Sync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.ops.Rename(tmp, filepath.Join(s.dir, stateFile))
	}
	if err == nil {
		err = s.ops.SyncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: save state: %w", err)
	}
	return nil
}

// Seq returns the sequence numbers saved with the last append.
func (s *Spool) Seq() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.state.Seq)
}

// Peek returns the oldest batch not yet acknowledged, or ok=false when the spool is empty. Until
// Ack it returns the same batch.
func (s *Spool) Peek() (b Batch, ok bool, err error) {
	bs, err := s.PeekN(1, 0)
	if err != nil || len(bs) == 0 {
		return Batch{}, false, err
	}
	return bs[0], true, nil
}

// PeekN returns the oldest batches not yet acknowledged, in order: at most maxBatches, and, after
// the first (which comes whatever its size), no more than maxBytes of spooled records in all. It
// returns none when the spool is empty. Until AckN or SendFailed the same batches stay pinned: a
// batch in memory is not moved to disk or dropped while it is being sent. Catching up after an
// outage one batch per Kafka request was too slow to overtake sampling at short intervals.
func (s *Spool) PeekN(maxBatches int, maxBytes int64) ([]Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maxBatches = max(maxBatches, 1)
	s.peeked, s.memPinned = s.peeked[:0], 0
	var out []Batch
	var total int64
	full := func(size int64) bool {
		return len(out) >= maxBatches || (len(out) > 0 && total+size > maxBytes)
	}
	more, err := s.peekDiskLocked(&out, &total, full)
	if err != nil || more {
		return out, err
	}
	// What memory holds is newer than everything on disk, so it may follow in the same request.
	for _, m := range s.mem {
		if full(int64(len(m.rec))) {
			break
		}
		b, _, err := readRecord(bytes.NewReader(m.rec))
		if err != nil {
			return nil, fmt.Errorf("spool: batch in memory: %w", err) // encode wrote it: cannot happen
		}
		out = append(out, b)
		total += int64(len(m.rec))
		s.memPinned++
	}
	return out, nil
}

// peekDiskLocked appends to out the disk records from the head on, while full says there is room,
// and notes where each lies in s.peeked; more reports that it stopped at a record there was no
// room for. A head segment found used up is removed on the way.
func (s *Spool) peekDiskLocked(out *[]Batch, total *int64, full func(size int64) bool) (more bool, err error) {
	left := s.held
	pos := s.head
	var f *os.File
	var r *bufio.Reader
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for left > 0 {
		if f == nil {
			if f, err = os.Open(s.segPath(pos.Seg)); err != nil {
				return false, fmt.Errorf("spool: %w", err)
			}
			if _, err := f.Seek(pos.Off, io.SeekStart); err != nil {
				return false, fmt.Errorf("spool: %w", err)
			}
			r = bufio.NewReaderSize(f, 64<<10)
		}
		var b Batch
		var size int64
		rerr := io.EOF
		if pos.Off < s.sizes[pos.Seg] {
			b, size, rerr = readRecordWithin(r, s.sizes[pos.Seg]-pos.Off)
		}
		if rerr != nil {
			// This segment is used up: go on in the next one.
			i, found := slices.BinarySearch(s.segs, pos.Seg)
			if !found || i+1 >= len(s.segs) {
				return false, nil
			}
			if pos == s.head && len(*out) == 0 && i == 0 {
				os.Remove(s.segPath(pos.Seg))
				delete(s.sizes, pos.Seg)
				s.segs = s.segs[1:]
				s.head = position{Seg: s.segs[0]}
				i = -1
			}
			pos = position{Seg: s.segs[i+1]}
			f.Close()
			f = nil
			continue
		}
		if full(size) {
			return true, nil
		}
		*out = append(*out, b)
		*total += size
		s.peeked = append(s.peeked, peekedRecord{seg: pos.Seg, off: pos.Off, size: size})
		pos.Off += size
		left--
	}
	return false, nil
}

// Ack removes the batch Peek returned, after the brokers acknowledged it (see AckN).
func (s *Spool) Ack() { s.AckN(1) }

// AckN removes the first n batches the last PeekN returned, after the brokers acknowledged them;
// the rest are returned again by the next PeekN. The new head is saved with the next append (or
// Close): a crash before then sends the batches since the last save again, which ingest
// recognises as repeats.
func (s *Spool) AckN(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = false
	disk := min(n, len(s.peeked))
	for _, r := range s.peeked[:disk] {
		if r.seg < s.head.Seg {
			continue // its segment was dropped at the cap while it was being sent, and counted
		}
		if r.seg > s.head.Seg && r.off == 0 {
			// Every record before it was acknowledged: the segments before its are used up.
			for len(s.segs) > 0 && s.segs[0] < r.seg {
				os.Remove(s.segPath(s.segs[0]))
				delete(s.sizes, s.segs[0])
				s.segs = s.segs[1:]
			}
			s.head = position{Seg: r.seg}
		}
		if r.seg != s.head.Seg || r.off != s.head.Off {
			continue // not the head's any more (a cap drop moved it): nothing of it to remove
		}
		s.head.Off += r.size
		s.held--
	}
	s.peeked = s.peeked[:0]
	if m := min(n-disk, s.memPinned); m > 0 {
		for _, b := range s.mem[:m] {
			s.memBytes -= int64(len(b.rec))
		}
		s.mem = slices.Delete(s.mem, 0, m)
	}
	s.memPinned = 0
}

// SendFailed tells the spool that the send of the batches PeekN returned did not get through:
// until the next AckN the spool keeps room for a restart (see enforceCapLocked), and batches from
// memory are let go, so that they can go to disk while Kafka is away; the next PeekN returns them
// again.
func (s *Spool) SendFailed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = true
	s.peeked = s.peeked[:0]
	s.memPinned = 0
}

// Durable reports whether every batch held is on disk, none only in memory.
func (s *Spool) Durable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mem) == 0
}

// Ready is signalled when a batch is appended.
func (s *Spool) Ready() <-chan struct{} { return s.notEmpty }

// Stats reports what the spool holds and has dropped.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.MemoryBatches = uint64(len(s.mem))
	st.Batches, st.Bytes = s.held+st.MemoryBatches, uint64(max(s.totalLocked(), 0))
	return st
}

// Persist writes what memory holds to disk if the disk now takes it, and saves the state. It
// returns the batches and rows still only in memory, which a process exiting now loses. Call it
// when no send is in flight.
func (s *Spool) Persist() (batches, rows uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.memPinned = 0
	s.peeked = s.peeked[:0]
	s.flushMemLocked()
	s.saveLocked()
	for _, m := range s.mem {
		rows += m.rows
	}
	return uint64(len(s.mem)), rows
}

// Close persists what it can (see Persist), closes the segment being appended to and releases
// the directory. Batches still only in memory are lost and counted as unspooled.
func (s *Spool) Close() error {
	batches, rows := s.Persist()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.UnspooledBatches += batches
	s.st.UnspooledRows += rows
	s.mem, s.memBytes = nil, 0
	var err error
	if s.tail != nil {
		err = s.tail.Close()
		s.tail = nil
	}
	if s.lock != nil {
		if lerr := s.lock.Close(); err == nil {
			err = lerr
		}
		s.lock = nil
	}
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

// durability is the file-system calls the spool's crash safety rests on; tests wrap it to check
// their order.
type durability interface {
	Sync(f *os.File) error
	Rename(from, to string) error
	SyncDir(dir string) error
}

type osDurability struct{}

func (osDurability) Sync(f *os.File) error        { return f.Sync() }
func (osDurability) Rename(from, to string) error { return os.Rename(from, to) }
func (osDurability) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
