//go:build chaos

package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// truth is what the sources produced, counted as each reading and event was taken: the expected
// side of every comparison, independent of Kafka, ingest and ClickHouse.
type truth struct {
	mu      sync.Mutex
	samples map[sampleKey]int
	events  map[eventKey]int
}

type sampleKey struct {
	node string
	gpu  uint32
	ms   int64
}

type eventKey struct {
	node string
	gpu  uint32
	ms   int64
	code uint64
	msg  string
}

func newTruth() *truth {
	return &truth{samples: map[sampleKey]int{}, events: map[eventKey]int{}}
}

func (tr *truth) add(node string, b *wirepb.SampleBatch, from int, ev []*wirepb.Event) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for i := from; i < len(b.TimeUnixMs); i++ {
		tr.samples[sampleKey{node, b.Gpus[b.Gpu[i]].Index, b.TimeUnixMs[i]}]++
	}
	for _, e := range ev {
		tr.events[eventKey{node, e.GpuIndex, e.TimeUnixMs, e.Code, e.Message}]++
	}
}

func (tr *truth) totals() (samples, events uint64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, n := range tr.samples {
		samples += uint64(n)
	}
	for _, n := range tr.events {
		events += uint64(n)
	}
	return samples, events
}

// source is a simulated node whose every reading and event is recorded in truth. Each cycle it
// adds an XID event of its own, and every fourth cycle two identical ones: two XIDs in one
// message must stay two rows, while a message delivered twice must not. skew shifts its clock.
type source struct {
	*sim.Node
	truth  *truth
	skew   time.Duration
	cycles int
}

func newSources(tr *truth, seed uint64, cluster string, nodes, gpus int) []agent.Source {
	var out []agent.Source
	for i := range nodes {
		out = append(out, &source{Node: sim.NewNode(seed, cluster, i, gpus), truth: tr})
	}
	return out
}

func (s *source) Sample(t time.Time, b *wirepb.SampleBatch, ev []*wirepb.Event) []*wirepb.Event {
	t = t.Add(s.skew)
	rows, evs := len(b.TimeUnixMs), len(ev)
	ev = s.Node.Sample(t, b, ev)
	s.cycles++
	g := s.GPUs()[s.cycles%len(s.GPUs())]
	ms := t.UnixMilli()
	ev = append(ev, &wirepb.Event{TimeUnixMs: ms, GpuIndex: g.Index, GpuUuid: g.Uuid,
		Kind: wirepb.EventKind_EVENT_KIND_XID, Code: 31, Message: "chaos cycle " + strconv.Itoa(s.cycles)})
	if s.cycles%4 == 0 {
		twin := &wirepb.Event{TimeUnixMs: ms, GpuIndex: g.Index, GpuUuid: g.Uuid,
			Kind: wirepb.EventKind_EVENT_KIND_XID, Code: 13, Message: "chaos twin"}
		ev = append(ev, twin, proto.CloneOf(twin))
	}
	s.truth.add(s.Name, b, rows, ev[evs:])
	return ev
}

// topics names one run's topics.
type topics struct{ samples, events, dlq string }

func topicsFor(prefix string) topics {
	return topics{prefix + ".samples", prefix + ".events", prefix + ".dlq"}
}

// agentRun is one agent process's worth of work: an agent.Agent over several simulated nodes, its
// own spool and producer, running until stopped.
type agentRun struct {
	a    *agent.Agent
	sp   *spool.Spool
	prod *kafka.Producer
	stop context.CancelFunc
	done chan error
}

type agentOpts struct {
	brokers  []string
	topics   topics
	sources  []agent.Source
	spoolDir string
	spoolMax int64
	interval time.Duration
	// sender wraps the Kafka producer (a fault between agent and broker).
	sender func(agent.Sender) agent.Sender
}

func startAgent(t *testing.T, o agentOpts) *agentRun {
	t.Helper()
	sp, err := spool.Open(o.spoolDir, spool.Options{MaxBytes: o.spoolMax})
	if err != nil {
		t.Fatal(err)
	}
	prod := kafka.NewProducer(o.brokers)
	var send agent.Sender = prod
	if o.sender != nil {
		send = o.sender(prod)
	}
	a, err := agent.New(agent.Config{Sources: o.sources, Sender: send, Interval: o.interval,
		SamplesTopic: o.topics.samples, EventsTopic: o.topics.events, Spool: sp, Logger: warnings("agent")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &agentRun{a: a, sp: sp, prod: prod, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	return r
}

// finish lets the agent send what its spool holds, as a running agent does once Kafka is back,
// then stops it and returns its spool's counters.
func (r *agentRun) finish(t *testing.T) spool.Stats {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for r.sp.Stats().Batches > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	st := r.halt(t)
	if st.Batches > 0 {
		t.Errorf("the agent stopped with %d batches unsent in its spool although Kafka was up", st.Batches)
	}
	return st
}

// halt stops the agent at once (Kafka down: what it holds stays in the spool for its next run).
func (r *agentRun) halt(t *testing.T) spool.Stats {
	t.Helper()
	r.stop()
	if err := <-r.done; err != nil {
		t.Errorf("agent: %v", err)
	}
	st := r.sp.Stats()
	t.Logf("agent stopped: %+v; spool %+v", r.a.Stats(), st)
	r.sp.Close()
	r.prod.Close()
	return st
}

// foldMatrix says whether the matrix runs with gpu_1m and gpu_1h folded by ingest
// (ingest.Config.Fold, a fold a second): GPUFLEET_CHAOS_FOLD=1, make chaos's second run. The
// binary's ingest (the kill -9 fault) takes it from the environment it inherits, as GPUFLEET_FOLD
// and GPUFLEET_FOLD_AGE, which the matrix sets either way.
func foldMatrix() bool { return os.Getenv("GPUFLEET_CHAOS_FOLD") == "1" }

// ingestRun is an in-process ingest worker.
type ingestRun struct {
	in   *ingest.Ingester
	stop context.CancelFunc
	done chan error
}

func startIngest(t *testing.T, cfg ingest.Config) *ingestRun {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = warnings("ingest")
	}
	if foldMatrix() {
		cfg.Fold, cfg.FoldAge = true, time.Second
	}
	in, err := ingest.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &ingestRun{in: in, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- in.Run(ctx) }()
	return r
}

func (r *ingestRun) finish(t *testing.T) ingest.Stats {
	t.Helper()
	r.stop()
	if err := <-r.done; err != nil {
		t.Errorf("ingest: %v", err)
	}
	return r.in.Stats()
}

// warnings logs what the pipeline warns about to stderr: the faults make it warn, and a failed row
// needs the why.
func warnings(who string) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("in", who)
}

// caughtUp reports whether group has committed every message of topics (name → partitions): ingest
// commits only what ClickHouse acknowledged, so then everything sent is stored.
func caughtUp(ctx context.Context, brokers []string, group string, topics map[string]int) (bool, error) {
	c := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	req := &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	lreq := &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{}}
	for name, n := range topics {
		for p := range n {
			req.Topics[name] = append(req.Topics[name], p)
			lreq.Topics[name] = append(lreq.Topics[name], kafkago.LastOffsetOf(p))
		}
	}
	committed, err := c.OffsetFetch(ctx, req)
	if err != nil {
		return false, fmt.Errorf("fetch committed offsets: %w", err)
	}
	ends, err := c.ListOffsets(ctx, lreq)
	if err != nil {
		return false, fmt.Errorf("list end offsets: %w", err)
	}
	for name := range topics {
		end := map[int]int64{}
		for _, p := range ends.Topics[name] {
			if p.Error != nil {
				return false, fmt.Errorf("end offset of %s/%d: %w", name, p.Partition, p.Error)
			}
			end[p.Partition] = p.LastOffset
		}
		for _, p := range committed.Topics[name] {
			if p.Error != nil {
				return false, fmt.Errorf("committed offset of %s/%d: %w", name, p.Partition, p.Error)
			}
			// No commit yet is -1; an empty partition's end is 0.
			if max(p.CommittedOffset, 0) < end[p.Partition] {
				return false, nil
			}
		}
	}
	return true, nil
}

// waitCaughtUp polls caughtUp until it holds, failing t after limit.
func waitCaughtUp(t *testing.T, limit time.Duration, brokers []string, group string, topics map[string]int) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := caughtUp(ctx, brokers, group, topics)
		cancel()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("ingest group %s did not commit every message within %s (last error: %v)", group, limit, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitFor polls cond every 50 ms, failing t after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s", what, limit)
		}
	}
}

// reader runs a SELECT and returns its cells as text; the same SQL runs in-process on a store or
// through `gpufleet query --sql` on a chDB directory another process wrote.
type reader func(ctx context.Context, sql string) ([][]string, error)

func storeReader(st store.Store) reader {
	return func(ctx context.Context, sql string) ([][]string, error) {
		res, err := st.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		out := make([][]string, len(res.Rows))
		for i, r := range res.Rows {
			for _, c := range r {
				out[i] = append(out[i], fmt.Sprint(c))
			}
		}
		return out, nil
	}
}

// cliReader reads a chDB directory through the built binary's read path.
func cliReader(bin, dsn string) reader {
	return func(ctx context.Context, sql string) ([][]string, error) {
		cmd := exec.CommandContext(ctx, bin, "query", "--clickhouse", dsn, "--sql", sql)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("gpufleet query: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		var res struct{ Rows [][]any }
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&res); err != nil {
			return nil, fmt.Errorf("gpufleet query output: %w", err)
		}
		cells := make([][]string, len(res.Rows))
		for i, r := range res.Rows {
			for _, c := range r {
				cells[i] = append(cells[i], fmt.Sprint(c))
			}
		}
		return cells, nil
	}
}

// rollupTables are the materialized-view targets that count samples; jobs counts those with a job.
var rollupTables = schema.SampleViews()

// outcome is one fault's row of the table.
type outcome struct {
	fault, injected string
	expSamples      uint64
	expEvents       uint64
	dropped         uint64 // sample rows the agent counted as dropped (spool cap, full disk)
	gotSamples      uint64
	gotEvents       uint64
	rollups         map[string]uint64
	lost, dup       uint64
	peakRSS         uint64 // bytes
	rssOf           string
	problems        []string
}

// compare counts what db holds against tr: every sample key once, every event key as often as it
// was raised, every rollup summing to the samples stored. droppedRows are the sample rows the
// agents counted as dropped: they (and the events of their batches) are not losses, any other
// missing row is.
func compare(t *testing.T, read reader, db string, tr *truth, droppedRows uint64) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var o outcome
	o.dropped = droppedRows
	tr.mu.Lock()
	defer tr.mu.Unlock()

	rows, err := read(ctx, "SELECT node, gpu, toUnixTimestamp64Milli(time) AS ms, count() AS n FROM "+
		store.Table(db, "gpu_samples")+" GROUP BY node, gpu, ms")
	if err != nil {
		t.Fatalf("count samples: %v", err)
	}
	got := map[sampleKey]int{}
	for _, r := range rows {
		k := sampleKey{node: r[0], gpu: uint32(atoi(t, r[1])), ms: atoi(t, r[2])}
		got[k] = int(atoi(t, r[3]))
		o.gotSamples += uint64(got[k])
	}
	missingAt := map[[2]string]bool{} // (node, ms) of sample instants not stored
	var missing uint64
	for k, want := range tr.samples {
		o.expSamples += uint64(want)
		if g := got[k]; g < want {
			missing += uint64(want - g)
			missingAt[[2]string{k.node, strconv.FormatInt(k.ms, 10)}] = true
		}
	}
	for k, g := range got {
		if want := tr.samples[k]; g > want {
			o.dup += uint64(g - want)
			if want == 0 {
				o.problems = append(o.problems, fmt.Sprintf("sample %v stored but never taken", k))
			}
		}
	}
	switch {
	case missing > droppedRows:
		o.lost += missing - droppedRows
	case missing < droppedRows:
		o.problems = append(o.problems, fmt.Sprintf("%d sample rows counted as dropped but only %d missing", droppedRows, missing))
	}
	o.expSamples -= droppedRows

	rows, err = read(ctx, "SELECT node, gpu, toUnixTimestamp64Milli(time) AS ms, code, message, count() AS n FROM "+
		store.Table(db, "gpu_events")+" GROUP BY node, gpu, ms, code, message")
	if err != nil {
		t.Fatalf("count events: %v", err)
	}
	gotEv := map[eventKey]int{}
	for _, r := range rows {
		k := eventKey{node: r[0], gpu: uint32(atoi(t, r[1])), ms: atoi(t, r[2]), code: uint64(atoi(t, r[3])), msg: r[4]}
		gotEv[k] = int(atoi(t, r[5]))
		o.gotEvents += uint64(gotEv[k])
	}
	for k, want := range tr.events {
		g := gotEv[k]
		if g >= want {
			o.expEvents += uint64(want)
			continue
		}
		if missingAt[[2]string{k.node, strconv.FormatInt(k.ms, 10)}] && g == 0 {
			continue // dropped with its batch, counted with the batch's samples
		}
		o.expEvents += uint64(want)
		o.lost += uint64(want - g)
	}
	for k, g := range gotEv {
		if want := tr.events[k]; g > want {
			o.dup += uint64(g - want)
		}
	}

	q := "SELECT "
	for i, table := range rollupTables {
		if i > 0 {
			q += ", "
		}
		q += "(SELECT sum(samples) FROM " + store.Table(db, table) + ")"
	}
	rows, err = read(ctx, q)
	if err != nil {
		t.Fatalf("count rollups: %v", err)
	}
	o.rollups = map[string]uint64{}
	for i, table := range rollupTables {
		n := uint64(atoi(t, rows[0][i]))
		o.rollups[table] = n
		// Every simulated GPU is in a job, so jobs counts every sample too.
		switch {
		case n > o.expSamples:
			o.dup += n - o.expSamples
			o.problems = append(o.problems, fmt.Sprintf("%s counts %d samples, %d expected", table, n, o.expSamples))
		case n < o.expSamples:
			o.lost += o.expSamples - n
			o.problems = append(o.problems, fmt.Sprintf("%s counts %d samples, %d expected", table, n, o.expSamples))
		}
	}
	return o
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	if s == "<nil>" || s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		u, uerr := strconv.ParseUint(s, 10, 64)
		if uerr != nil {
			t.Fatalf("not a number: %q", s)
		}
		return int64(u)
	}
	return n
}

// resetPeakRSS starts this process's peak resident set size afresh (Linux clear_refs 5), so that
// peakRSS reports the peak of one fault's run.
func resetPeakRSS() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS is this process's VmHWM in bytes.
func peakRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// table renders the outcomes as one Markdown table.
func table(rows []outcome) string {
	var b strings.Builder
	b.WriteString("| fault | injected | expected | stored (raw) | stored (rollups) | lost | duplicated | peak RSS |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, o := range rows {
		if o.rollups == nil {
			fmt.Fprintf(&b, "| %s | %s | — | — | — | — | — | — |\n", o.fault, o.injected)
			continue
		}
		exp := fmt.Sprintf("%d samples, %d events", o.expSamples, o.expEvents)
		if o.dropped > 0 {
			exp += fmt.Sprintf(" (%d counted dropped)", o.dropped)
		}
		var roll []string
		names := make([]string, 0, len(o.rollups))
		for n := range o.rollups {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			roll = append(roll, fmt.Sprintf("%s %d", n, o.rollups[n]))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d samples, %d events | %s | %d | %d | %.0f MiB (%s) |\n",
			o.fault, o.injected, exp, o.gotSamples, o.gotEvents, strings.Join(roll, ", "), o.lost, o.dup,
			float64(o.peakRSS)/(1<<20), o.rssOf)
	}
	return b.String()
}

// report prints the table and writes it to $GPUFLEET_CHAOS_REPORT when set.
func report(t *testing.T, rows []outcome) {
	s := table(rows)
	fmt.Println()
	fmt.Print(s)
	if p := os.Getenv("GPUFLEET_CHAOS_REPORT"); p != "" {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
				t.Errorf("write report: %v", err)
			}
		}
	}
}
