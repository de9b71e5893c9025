// Package spool is the agent's bounded on-disk write-ahead log: every batch of messages is written
// here before it is sent, sent from here in order, and removed only after the brokers acknowledged
// it. While Kafka is unreachable the agent keeps sampling into the spool; after a restart it sends
// what the previous run left. When the spool reaches its size cap the oldest batches are dropped —
// the only way a sample taken is lost — and counted.
package spool

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Message is one Kafka message of a batch.
type Message struct {
	Topic string
	Key   []byte
	Value []byte
}

// Batch is what one send delivers: one cycle's messages and the sample rows they carry.
type Batch struct {
	Rows, Events uint64
	Msgs         []Message
}

// Stats counts what the spool holds and has dropped.
type Stats struct {
	Batches, Bytes              uint64 // held, not yet acknowledged
	DroppedBatches, DroppedRows uint64 // dropped at the cap since Open
}

// Spool is safe for one appender and one sender at a time.
type Spool struct {
	dir      string
	maxBytes int64
	segBytes int64

	mu       sync.Mutex
	notEmpty chan struct{} // signalled (non-blocking) on every append
	segs     []int64       // segment numbers on disk, oldest first
	sizes    map[int64]int64
	head     position // next batch to send
	peeked   int64    // size of the record Peek last returned, 0 after Ack
	tail     *os.File // the segment being appended to
	tailSeg  int64
	held     uint64
	state    State
	dropped  Stats
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

// Open opens or creates the spool in dir, capped at maxBytes (at least 1 MiB).
func Open(dir string, maxBytes int64) (*Spool, error) {
	if maxBytes < 1<<20 {
		return nil, fmt.Errorf("spool: size cap %d bytes is under 1 MiB", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s := &Spool{dir: dir, maxBytes: maxBytes, segBytes: min(maxBytes/8, 16<<20), notEmpty: make(chan struct{}, 1),
		sizes: map[int64]int64{}, state: State{Seq: map[string]uint64{}}}
	if b, err := os.ReadFile(filepath.Join(dir, "state.json")); err == nil {
		if err := json.Unmarshal(b, &s.state); err != nil {
			return nil, fmt.Errorf("spool: state.json: %w", err)
		}
		if s.state.Seq == nil {
			s.state.Seq = map[string]uint64{}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".seg"); ok {
			if seg, err := strconv.ParseInt(n, 10, 64); err == nil {
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
	// Count what is held, and cut a torn record off the end of the last segment.
	for _, seg := range s.segs {
		from := int64(0)
		if seg == s.head.Seg {
			from = s.head.Off
		}
		n, _, end, err := s.scan(seg, from)
		if err != nil {
			return nil, err
		}
		s.held += n
		s.sizes[seg] = end
		if err := os.Truncate(s.segPath(seg), end); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	if len(s.segs) == 0 || s.head.Seg < s.segs[0] {
		next := s.head.Seg
		if len(s.segs) > 0 {
			next = s.segs[0]
		}
		s.head = position{Seg: next}
	}
	return s, nil
}

func (s *Spool) segPath(seg int64) string { return filepath.Join(s.dir, fmt.Sprintf("%012d.seg", seg)) }

// record: u32 length of payload, u32 CRC-32C of payload, payload = u64 rows, u64 events, u32 message count,
// then per message u16 topic length, topic, u32 key length, key, u32 value length, value.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

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

func readRecord(r io.Reader) (Batch, int64, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.EOF {
			return Batch{}, 0, io.EOF
		}
		return Batch{}, 0, errTorn
	}
	n := binary.LittleEndian.Uint32(hdr[:4])
	if n > 256<<20 {
		return Batch{}, 0, errTorn
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil || crc32.Checksum(p, crcTable) != binary.LittleEndian.Uint32(hdr[4:]) {
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
	take := func(n int) ([]byte, bool) {
		if len(p) < n {
			return nil, false
		}
		v := p[:n:n]
		p = p[n:]
		return v, true
	}
	for range count {
		var m Message
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
// cap would be exceeded. seq is saved with it.
func (s *Spool) Append(b Batch, seq map[string]uint64) error {
	rec := encode(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tail == nil || s.sizes[s.tailSeg] >= s.segBytes {
		if err := s.rollLocked(); err != nil {
			return err
		}
	}
	if _, err := s.tail.Write(rec); err != nil {
		return fmt.Errorf("spool: write: %w", err)
	}
	if err := s.tail.Sync(); err != nil {
		return fmt.Errorf("spool: sync: %w", err)
	}
	s.sizes[s.tailSeg] += int64(len(rec))
	s.held++
	for k, v := range seq {
		s.state.Seq[k] = v
	}
	s.enforceCapLocked()
	if err := s.saveLocked(); err != nil {
		return err
	}
	select {
	case s.notEmpty <- struct{}{}:
	default:
	}
	return nil
}

func (s *Spool) rollLocked() error {
	if s.tail != nil {
		s.tail.Close()
	}
	next := s.head.Seg
	if len(s.segs) > 0 {
		next = s.segs[len(s.segs)-1] + 1
	}
	f, err := os.OpenFile(s.segPath(next), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if len(s.segs) == 0 || s.segs[len(s.segs)-1] != next {
		s.segs = append(s.segs, next)
	}
	s.tail, s.tailSeg = f, next
	return nil
}

// enforceCapLocked drops whole segments from the front, never the one being appended to.
func (s *Spool) enforceCapLocked() {
	for s.totalLocked() > s.maxBytes && len(s.segs) > 1 {
		seg := s.segs[0]
		from := int64(0)
		if seg == s.head.Seg {
			from = s.head.Off
		}
		n, rows, _, _ := s.scan(seg, from) // an unreadable segment is dropped all the same
		s.dropped.DroppedBatches += n
		s.dropped.DroppedRows += rows
		s.held -= n
		os.Remove(s.segPath(seg))
		delete(s.sizes, seg)
		s.segs = s.segs[1:]
		if seg == s.head.Seg {
			s.peeked = 0
		}
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

func (s *Spool) saveLocked() error {
	s.state.Head = s.head
	b, err := json.Marshal(s.state)
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, "state.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("spool: save state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "state.json")); err != nil {
		return fmt.Errorf("spool: save state: %w", err)
	}
	return nil
}

// Seq returns the sequence numbers saved with the last append.
func (s *Spool) Seq() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.state.Seq))
	for k, v := range s.state.Seq {
		out[k] = v
	}
	return out
}

// Peek returns the oldest batch not yet acknowledged, or ok=false when the spool is empty.
func (s *Spool) Peek() (b Batch, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.held > 0 {
		f, err := os.Open(s.segPath(s.head.Seg))
		if err != nil {
			return Batch{}, false, fmt.Errorf("spool: %w", err)
		}
		f.Seek(s.head.Off, io.SeekStart)
		b, size, err := readRecord(bufio.NewReader(f))
		f.Close()
		if err == nil {
			s.peeked = size
			return b, true, nil
		}
		// The head segment is used up: move to the next one.
		if len(s.segs) < 2 || s.segs[0] != s.head.Seg {
			return Batch{}, false, nil
		}
		if s.head.Seg != s.tailSeg {
			os.Remove(s.segPath(s.head.Seg))
			delete(s.sizes, s.head.Seg)
		}
		s.segs = s.segs[1:]
		s.head = position{Seg: s.segs[0]}
	}
	return Batch{}, false, nil
}

// Ack removes the batch Peek returned, after the brokers acknowledged it.
func (s *Spool) Ack() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peeked == 0 {
		return nil // the batch's segment was dropped at the cap while it was being sent
	}
	s.head.Off += s.peeked
	s.peeked = 0
	s.held--
	return s.saveLocked()
}

// Ready is signalled when a batch is appended.
func (s *Spool) Ready() <-chan struct{} { return s.notEmpty }

// Stats reports what the spool holds and has dropped.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.dropped
	st.Batches, st.Bytes = s.held, uint64(max(s.totalLocked(), 0))
	return st
}

// Close closes the segment being appended to.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tail != nil {
		return s.tail.Close()
	}
	return nil
}
