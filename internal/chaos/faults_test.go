//go:build chaos

package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// env is what the faults share: the package's broker, a three-broker cluster, a broker of the
// matrix's own that faults may stop, and the built binary for the faults that need a process to kill.
type env struct {
	shared  []string
	cluster *testenv.Cluster
	private *testenv.Broker
	bin     string
	lib     string
}

// TestFaultMatrix runs every fault and prints the table (see package doc; make chaos).
func TestFaultMatrix(t *testing.T) {
	if foldMatrix() {
		t.Setenv("GPUFLEET_FOLD", "true")
		t.Setenv("GPUFLEET_FOLD_AGE", "1s")
	} else {
		t.Setenv("GPUFLEET_FOLD", "false") // the binary's default folds; this run is the views'
	}
	e := &env{shared: testenv.Kafka(t), lib: testenv.LibCHDB(t)}
	e.cluster = testenv.NewKafkaCluster(t)
	e.private = testenv.NewKafka(t)
	e.bin = buildBinary(t)
	faults := []struct {
		name string
		run  func(*testing.T, *env) outcome
	}{
		{"baseline", faultNone},
		{"leader-kill", faultLeaderKill},
		{"cluster-stopped-30s", faultClusterStopped},
		{"ingest-kill-9-x5", faultIngestKill9},
		{"clickhouse-unavailable", faultStoreDown},
		{"agent-restart-full-spool", faultRestartFullSpool},
		{"spool-disk-full", faultDiskFull},
		{"agent-clock-skew", faultClockSkew},
		{"every-message-twice", faultDeliveredTwice},
		{"workers-join-leave", faultWorkersJoinLeave},
		{"oversized-and-malformed", faultBadMessages},
	}
	var rows []outcome
	for _, f := range faults {
		var o outcome
		ran := false
		t.Run(f.name, func(t *testing.T) {
			defer func() {
				if !ran {
					rows = append(rows, outcome{fault: f.name, injected: "**run failed: see the log above**"})
				}
			}()
			resetPeakRSS()
			o = f.run(t, e)
			if o.rssOf == "" {
				o.peakRSS, o.rssOf = peakRSS(), "test process: agents, ingest, chDB"
			}
			if o.fault == "" {
				o.fault = f.name
			}
			rows = append(rows, o)
			ran = true
			if o.lost > 0 || o.dup > 0 {
				t.Errorf("%s: %d lost, %d duplicated", f.name, o.lost, o.dup)
			}
			for _, p := range o.problems {
				t.Error(p)
			}
		})
	}
	report(t, rows)
}

func buildBinary(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "gpufleet")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gpufleet")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// run is one fault's pipeline: a migrated database of its own, topics of its own, the truth.
type run struct {
	brokers []string
	st      store.Store
	tp      topics
	parts   int
	truth   *truth
	group   string
}

func newRun(t *testing.T, brokers []string, parts int, topic func(*kafka.Topic)) *run {
	t.Helper()
	st := testenv.CHDB(t)
	r := &run{brokers: brokers, st: st, tp: topicsFor(st.Database()), parts: parts, truth: newTruth(), group: st.Database() + ".ingest"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	ts := []kafka.Topic{{Name: r.tp.samples, Partitions: parts}, {Name: r.tp.events, Partitions: parts},
		{Name: r.tp.dlq, Partitions: 1, MaxMessageBytes: kafka.DefaultDLQMaxMessageBytes}}
	for i := range ts {
		if topic != nil {
			topic(&ts[i])
		}
	}
	if err := kafka.EnsureTopics(ctx, brokers, ts); err != nil {
		t.Fatal(err)
	}
	return r
}

func replicated(tp *kafka.Topic) { tp.ReplicationFactor, tp.MinInsyncReplicas = 3, 2 }

func (r *run) ingestConfig() ingest.Config {
	return ingest.Config{Brokers: r.brokers, Store: r.st, GroupID: r.group, SamplesTopic: r.tp.samples,
		EventsTopic: r.tp.events, DLQTopic: r.tp.dlq, BatchAge: 200 * time.Millisecond, SessionTimeout: 6 * time.Second}
}

func (r *run) agent(t *testing.T, o agentOpts) *agentRun {
	t.Helper()
	o.brokers, o.topics = r.brokers, r.tp
	if o.sources == nil {
		o.sources = newSources(r.truth, 7, "chaos", 4, 8)
	}
	if o.spoolDir == "" {
		o.spoolDir = t.TempDir()
	}
	if o.spoolMax == 0 {
		o.spoolMax = 64 << 20
	}
	if o.interval == 0 {
		o.interval = 100 * time.Millisecond
	}
	return startAgent(t, o)
}

// settle waits until ingest committed every message of the run's topics.
func (r *run) settle(t *testing.T) {
	t.Helper()
	waitCaughtUp(t, 3*time.Minute, r.brokers, r.group, map[string]int{r.tp.samples: r.parts, r.tp.events: r.parts})
	time.Sleep(time.Second) // a duplicate would be stored after the last original
}

func (r *run) outcome(t *testing.T, dropped uint64) outcome {
	return compare(t, storeReader(r.st), r.st.Database(), r.truth, dropped)
}

func faultNone(t *testing.T, e *env) outcome {
	r := newRun(t, e.shared, 4, nil)
	in := startIngest(t, r.ingestConfig())
	ag := r.agent(t, agentOpts{})
	time.Sleep(5 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	in.finish(t)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	o.injected = "nothing: 4 nodes × 8 GPUs at 100 ms for 5 s"
	return o
}

// The leader of a samples partition is killed with kill -9 while agents write (acks=all, RF 3,
// min.insync.replicas 2) and ingest reads.
func faultLeaderKill(t *testing.T, e *env) outcome {
	r := newRun(t, e.cluster.Addrs, 4, replicated)
	in := startIngest(t, r.ingestConfig())
	ag := r.agent(t, agentOpts{})
	time.Sleep(3 * time.Second)
	leader := e.cluster.LeaderOf(t, r.tp.samples, 0)
	e.cluster.Kill9(t, leader)
	time.Sleep(8 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	st := in.finish(t)
	e.cluster.Resume(t, leader)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	o.injected = fmt.Sprintf("kill -9 of node %d, leader of samples/0, 3 s in; 8 s more on two brokers (%d fetch errors retried, %d repeats dropped)",
		leader+1, st.FetchErrors, st.Duplicates)
	return o
}

// All three brokers stop for 30 s while agents sample (into their spools) and ingest waits.
func faultClusterStopped(t *testing.T, e *env) outcome {
	r := newRun(t, e.cluster.Addrs, 4, replicated)
	in := startIngest(t, r.ingestConfig())
	ag := r.agent(t, agentOpts{})
	time.Sleep(3 * time.Second)
	e.cluster.StopAll(t)
	held := uint64(0)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		held = max(held, ag.sp.Stats().Batches)
		time.Sleep(500 * time.Millisecond)
	}
	e.cluster.ResumeAll(t)
	time.Sleep(3 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	st := in.finish(t)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	o.injected = fmt.Sprintf("all 3 brokers stopped 3 s in, for 30 s (spools held up to %d batches; %d fetch errors retried)", held, st.FetchErrors)
	return o
}

// Ingest is a process of its own here, killed with kill -9 at five random points (fixed seed),
// each time started again on the same chDB directory; the counts are read through the binary's
// read path once the last one has stopped.
func faultIngestKill9(t *testing.T, e *env) outcome {
	brokers := []string{e.private.Addr}
	dir := filepath.Join(t.TempDir(), "chdb")
	dsn := "chdb://" + dir
	gf := func(args ...string) {
		t.Helper()
		cmd := exec.Command(e.bin, args...)
		cmd.Env = append(os.Environ(), "GPUFLEET_LIBCHDB="+e.lib)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gpufleet %v: %v\n%s", args, err, out)
		}
	}
	gf("topics", "--brokers", brokers[0], "--partitions", "4", "--replication-factor", "1", "--min-insync-replicas", "1")
	gf("migrate", "--clickhouse", dsn)
	tr := newTruth()
	tp := topics{samples: wire.SamplesTopic, events: wire.EventsTopic, dlq: wire.DLQTopic}
	ag := startAgent(t, agentOpts{brokers: brokers, topics: tp, sources: newSources(tr, 11, "chaos", 4, 8),
		spoolDir: t.TempDir(), spoolMax: 64 << 20, interval: 100 * time.Millisecond})
	var peak uint64
	start := func() *exec.Cmd {
		cmd := exec.Command(e.bin, "ingest", "--brokers", brokers[0], "--clickhouse", dsn, "--libchdb", e.lib,
			"--metrics-addr", "", "--batch-age", "200ms", "--session-timeout", "6s", "--log-level", "warn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	maxRSS := func(cmd *exec.Cmd) {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			peak = max(peak, uint64(ru.Maxrss)<<10)
		}
	}
	rng := rand.New(rand.NewPCG(14, 9))
	var kills []string
	for range 5 {
		cmd := start()
		d := 3*time.Second + time.Duration(rng.Int64N(int64(6*time.Second)))
		time.Sleep(d)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		maxRSS(cmd)
		kills = append(kills, d.Truncate(100*time.Millisecond).String())
	}
	cmd := start()
	sp := ag.finish(t)
	waitCaughtUp(t, 3*time.Minute, brokers, "gpufleet-ingest", map[string]int{tp.samples: 4, tp.events: 4})
	time.Sleep(time.Second)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("last ingest: %v", err)
	}
	maxRSS(cmd)
	o := compare(t, cliReader(e.bin, dsn), "gpufleet", tr, sp.DroppedRows+sp.UnspooledRows)
	o.injected = fmt.Sprintf("`gpufleet ingest` killed with SIGKILL %v after start, restarted each time", kills)
	o.peakRSS, o.rssOf = peak, "ingest process, largest of 6"
	return o
}

// outage makes the real store refuse every call while down is set, as a ClickHouse restart would.
type outage struct {
	store.Store
	down atomic.Bool
}

var errDown = errors.New("clickhouse unavailable (chaos outage)")

func (o *outage) Insert(ctx context.Context, table string, b *store.Block, token string) error {
	if o.down.Load() {
		return errDown
	}
	return o.Store.Insert(ctx, table, b, token)
}

func (o *outage) Query(ctx context.Context, q string) (*store.Result, error) {
	if o.down.Load() {
		return nil, errDown
	}
	return o.Store.Query(ctx, q)
}

func (o *outage) QueryWith(ctx context.Context, q string, p store.Params) (*store.Result, error) {
	if o.down.Load() {
		return nil, errDown
	}
	return o.Store.QueryWith(ctx, q, p)
}

func (o *outage) Exec(ctx context.Context, q string) error {
	if o.down.Load() {
		return errDown
	}
	return o.Store.Exec(ctx, q)
}

func faultStoreDown(t *testing.T, e *env) outcome {
	r := newRun(t, e.shared, 4, nil)
	o := &outage{Store: r.st}
	cfg := r.ingestConfig()
	cfg.Store = o
	in := startIngest(t, cfg)
	ag := r.agent(t, agentOpts{})
	time.Sleep(2 * time.Second)
	o.down.Store(true)
	time.Sleep(10 * time.Second)
	o.down.Store(false)
	time.Sleep(2 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	in.finish(t)
	out := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	out.injected = "every ClickHouse call refused for 10 s, 2 s in"
	return out
}

// Kafka is down while the agent fills its 1 MiB spool (the oldest batches dropped at the cap, and
// counted); the agent stops and starts again on the full spool with Kafka back.
func faultRestartFullSpool(t *testing.T, e *env) outcome {
	r := newRun(t, []string{e.private.Addr}, 2, nil)
	in := startIngest(t, r.ingestConfig())
	e.private.Stop(t)
	dir := t.TempDir()
	sources := newSources(r.truth, 13, "chaos", 4, 8)
	ag := r.agent(t, agentOpts{sources: sources, spoolDir: dir, spoolMax: 1 << 20, interval: 50 * time.Millisecond})
	var full time.Time
	waitFor(t, 2*time.Minute, "the spool to drop at its cap", func() bool {
		if full.IsZero() && ag.sp.Stats().DroppedBatches > 0 {
			full = time.Now()
		}
		return !full.IsZero() && time.Since(full) > 500*time.Millisecond
	})
	sp1 := ag.halt(t)
	e.private.Resume(t) // returns once the broker leads its partitions again
	ag = r.agent(t, agentOpts{sources: sources, spoolDir: dir, spoolMax: 1 << 20, interval: 50 * time.Millisecond})
	time.Sleep(3 * time.Second)
	sp2 := ag.finish(t)
	r.settle(t)
	in.finish(t)
	o := r.outcome(t, sp1.DroppedRows+sp1.UnspooledRows+sp2.DroppedRows+sp2.UnspooledRows)
	o.injected = fmt.Sprintf("Kafka down, 1 MiB spool full (%d oldest batches dropped at the cap, counted), agent restarted on it with Kafka back (%d dropped after the restart)",
		sp1.DroppedBatches, sp2.DroppedBatches+sp2.UnspooledBatches)
	if sp2.DroppedBatches+sp2.UnspooledBatches > 0 {
		o.problems = append(o.problems, "the restarted agent dropped batches although Kafka was up")
	}
	return o
}

// The spool's disk is a 4 MiB tmpfs, filled to the last byte by another file for 5 s while Kafka
// is up: the agent keeps sampling and sends from memory.
func faultDiskFull(t *testing.T, e *env) outcome {
	r := newRun(t, e.shared, 4, nil)
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=4m"); err != nil {
		t.Fatalf("mount a 4 MiB tmpfs for the spool (the matrix runs as root, as CI does): %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	in := startIngest(t, r.ingestConfig())
	ag := r.agent(t, agentOpts{spoolDir: filepath.Join(mnt, "state")})
	time.Sleep(2 * time.Second)
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()
	time.Sleep(5 * time.Second)
	refused := ag.sp.Stats().WriteErrors
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	in.finish(t)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	o.injected = fmt.Sprintf("spool tmpfs full for 5 s, Kafka up (%d writes refused; %d batches dropped, counted)", refused, sp.UnspooledBatches+sp.DroppedBatches)
	if refused == 0 {
		o.problems = append(o.problems, "the full disk refused no write: the fault was not injected")
	}
	return o
}

// Two of four nodes' clocks are off by ten minutes, one ahead and one behind.
func faultClockSkew(t *testing.T, e *env) outcome {
	r := newRun(t, e.shared, 4, nil)
	in := startIngest(t, r.ingestConfig())
	sources := newSources(r.truth, 17, "chaos", 4, 8)
	sources[0].(*source).skew = 10 * time.Minute
	sources[1].(*source).skew = -10 * time.Minute
	ag := r.agent(t, agentOpts{sources: sources})
	time.Sleep(5 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	st := in.finish(t)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	o.injected = fmt.Sprintf("node 0 clock +10 min, node 1 −10 min (%d messages flagged ahead)", st.Skewed)
	if st.Skewed == 0 {
		o.problems = append(o.problems, "no message counted as skewed although a node ran 10 min ahead")
	}
	return o
}

// twice delivers every message two times in a row, as a producer retry after a lost ack does.
type twice struct{ agent.Sender }

func (s twice) Send(ctx context.Context, msgs []wire.Message) error {
	doubled := make([]wire.Message, 0, 2*len(msgs))
	for _, m := range msgs {
		doubled = append(doubled, m, m)
	}
	return s.Sender.Send(ctx, doubled)
}

func faultDeliveredTwice(t *testing.T, e *env) outcome {
	r := newRun(t, e.shared, 4, nil)
	in := startIngest(t, r.ingestConfig())
	ag := r.agent(t, agentOpts{sender: func(s agent.Sender) agent.Sender { return twice{s} }})
	time.Sleep(5 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	st := in.finish(t)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	o.injected = fmt.Sprintf("every samples and events message written twice (%d repeats dropped)", st.Duplicates)
	return o
}

// Three workers of one group on six partitions: B joins at 4 s, C at 8 s, A leaves at 12 s, B at 16 s.
func faultWorkersJoinLeave(t *testing.T, e *env) outcome {
	r := newRun(t, e.shared, 6, nil)
	a := startIngest(t, r.ingestConfig())
	ag := r.agent(t, agentOpts{})
	time.Sleep(4 * time.Second)
	b := startIngest(t, r.ingestConfig())
	time.Sleep(4 * time.Second)
	c := startIngest(t, r.ingestConfig())
	time.Sleep(4 * time.Second)
	sa := a.finish(t)
	time.Sleep(4 * time.Second)
	sb := b.finish(t)
	time.Sleep(2 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	sc := c.finish(t)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	o.injected = fmt.Sprintf("3 workers, 6 partitions: B joins 4 s, C 8 s, A leaves 12 s, B 16 s (%d generations joined)",
		sa.Rebalances+sb.Rebalances+sc.Rebalances)
	return o
}

// A 2 MB message (zstd, as kcat -z zstd sends it) and malformed bytes on the samples topic, and
// malformed bytes on the events topic, in the middle of the agents' traffic.
func faultBadMessages(t *testing.T, e *env) outcome {
	r := newRun(t, e.shared, 2, func(tp *kafka.Topic) {
		if tp.Partitions > 1 {
			tp.MaxMessageBytes = 10_000_000
		}
	})
	in := startIngest(t, r.ingestConfig())
	ag := r.agent(t, agentOpts{})
	time.Sleep(2 * time.Second)
	w := &kafkago.Writer{Addr: kafkago.TCP(r.brokers...), Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll,
		BatchTimeout: time.Millisecond, Compression: kafkago.Zstd, BatchBytes: 10_000_000}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := w.WriteMessages(ctx,
		kafkago.Message{Topic: r.tp.samples, Key: []byte("big"), Value: make([]byte, 2<<20)},
		kafkago.Message{Topic: r.tp.samples, Key: []byte("node-00001"), Value: []byte("\xff\xfenot a batch")},
		kafkago.Message{Topic: r.tp.events, Key: []byte("node-00002"), Value: []byte("\x0a\xffbroken")})
	cancel()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	sp := ag.finish(t)
	r.settle(t)
	st := in.finish(t)
	o := r.outcome(t, sp.DroppedRows+sp.UnspooledRows)
	reasons := deadLetterReasons(t, r.brokers, r.tp.dlq, 3)
	o.injected = fmt.Sprintf("a 2 MB zstd message and two malformed ones mid-stream (%d dead letters: %v)", st.DLQ, reasons)
	if st.DLQ != 3 || len(reasons) != 3 {
		o.problems = append(o.problems, fmt.Sprintf("%d dead letters counted, %d read back with a reason, want 3", st.DLQ, len(reasons)))
	}
	return o
}

// deadLetterReasons reads n dead letters and returns their reason headers.
func deadLetterReasons(t *testing.T, brokers []string, topic string, n int) []string {
	t.Helper()
	rd := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond, MaxBytes: 32 << 20})
	defer rd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []string
	for len(out) < n {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Errorf("read dead letter %d of %d: %v", len(out)+1, n, err)
			return out
		}
		for _, h := range m.Headers {
			if h.Key == "reason" && len(h.Value) > 0 {
				r := string(h.Value)
				if len(r) > 60 {
					r = r[:60] + "…"
				}
				out = append(out, strconv.Quote(r))
			}
		}
	}
	return out
}
