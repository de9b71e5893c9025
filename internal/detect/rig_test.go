//go:build cgo

package detect_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gpufleet/gpufleet/agent"
	agentnvml "github.com/gpufleet/gpufleet/agent/nvml"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/health/nvmlmock"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/query"
)

const (
	// mockCluster holds the mock DGX H100 nodes the Xids are injected on; simCluster the simulated
	// fleet streaming beside them, which only adds load.
	mockCluster = "detect"
	simCluster  = "fleet"
	// defaultPartitions of gpu.samples and gpu.events: gpufleet topics' default.
	defaultPartitions = 8
)

// rigConfig sizes the pipeline. Every setting that decides how fast a fault travels is the
// default: agent.DefaultConfig (1 s interval, a send per sample), the agent's on-disk spool (on by
// default in `gpufleet agent`), ingest.DefaultConfig (1 s batch age).
type rigConfig struct {
	// mockNodes are mock DGX H100s of 8 GPUs, one agent each as on real nodes.
	mockNodes int
	// simNodes are simulated 8-GPU nodes in one agent, as `gpufleet simulate` runs them.
	simNodes int
	// poll is how often the readers look for the row and the drain listing: the figures are late
	// by up to this much.
	poll time.Duration
	// partitions of gpu.samples and gpu.events; 0 is gpufleet topics' default (8).
	partitions int
	// batchAge overrides ingest's BatchAge when set (to see what it costs; not the default).
	batchAge time.Duration
}

// rig is one running pipeline: agents → Kafka → ingest → chDB, and two read-only chDB sessions
// (the API's kind) that poll for what was injected.
type rig struct {
	cfg    rigConfig
	db     string
	mocks  []*nvmlmock.Node
	rowsRd *chdb.Store // polls gpu_events
	drainR *chdb.Store // polls query.Drain
	// The mock agents' and ingest's self-metrics: send and insert times, batch ages.
	agentRegs   []*prometheus.Registry
	ingestReg   *prometheus.Registry
	ingestStart time.Time

	stopAgents, stopIngest context.CancelFunc
	agents, ingester       sync.WaitGroup
	runErrs                chan error
	closers                []func() error // sources, spools, producers: closed once everything stopped
	closeOnce              sync.Once

	mu        sync.Mutex
	injected  []*injection
	byKey     map[string]*injection // node/uuid
	drainRuns []time.Duration       // how long each drain query took
	pollErr   error
}

// injection is one Xid put into the mock, and when the test saw its consequences.
type injection struct {
	node  string
	gpu   int
	uuid  string
	code  uint64
	want  health.State
	at    time.Time // queued in the mock's event set
	tick  time.Time // the event's time in its row: the agent tick that polled NVML
	row   time.Time // a poll of gpu_events first returned the row
	drain time.Time // a query.Drain first listed the GPU with the state wanted
	// What the drain list said.
	action, reason string
}

func key(node, uuid string) string { return node + "/" + uuid }

func nodeName(i int) string { return fmt.Sprintf("dgx-%02d", i) }

// startRig starts the services, the agents and ingest; they stop with close (also a cleanup).
func startRig(tb testing.TB, ctx context.Context, cfg rigConfig) *rig {
	tb.Helper()
	brokers := testenv.Kafka(tb)
	st := testenv.CHDB(tb)
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		tb.Fatal(err)
	}
	r := &rig{cfg: cfg, db: st.Database(), byKey: map[string]*injection{}, runErrs: make(chan error, cfg.mockNodes+2)}
	// Topics named after the test database keep runs on a shared broker apart.
	samples, events, dlq := r.db+".samples", r.db+".events", r.db+".dlq"
	partitions := cmp.Or(cfg.partitions, defaultPartitions)
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{
		{Name: samples, Partitions: partitions}, {Name: events, Partitions: partitions}, {Name: dlq, Partitions: 1}}); err != nil {
		tb.Fatal(err)
	}
	for _, rd := range []**chdb.Store{&r.rowsRd, &r.drainR} {
		s, err := chdb.OpenReader(testenv.DataDir(tb), r.db, testenv.LibCHDB(tb), store.DefaultLimits())
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		*rd = s
	}

	spools := tb.TempDir() // before close's cleanup, so removed after it
	agentCtx, stopAgents := context.WithCancel(context.WithoutCancel(ctx))
	ingestCtx, stopIngest := context.WithCancel(context.WithoutCancel(ctx))
	r.stopAgents, r.stopIngest = stopAgents, stopIngest
	// Before the stores' and the spools' cleanups (registered earlier, so run later): ingest writes
	// to st, the agents to their spools. From here on a Fatal still stops whatever was started.
	tb.Cleanup(func() { r.close(tb) })
	run := func(ctx context.Context, wg *sync.WaitGroup, name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				r.runErrs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	newAgent := func(srcs []agent.Source, sp *spool.Spool, reg prometheus.Registerer) *agent.Agent {
		prod := kafka.NewProducer(brokers)
		r.closers = append(r.closers, prod.Close)
		ac := agent.DefaultConfig()
		ac.Sources, ac.Sender, ac.Spool = srcs, prod, sp
		ac.SamplesTopic, ac.EventsTopic = samples, events
		ac.Health = &health.Config{}
		ac.Registerer = reg
		a, err := agent.New(ac)
		if err != nil {
			tb.Fatal(err)
		}
		return a
	}
	for i := range cfg.mockNodes {
		m := nvmlmock.New()
		src, err := agentnvml.New(agentnvml.FromNVML(m.Server), agentnvml.Options{Cluster: mockCluster, Node: nodeName(i)})
		if err != nil {
			tb.Fatal(err)
		}
		r.closers = append(r.closers, src.Close)
		sp, err := spool.Open(filepath.Join(spools, nodeName(i)), spool.Options{MaxBytes: 64 << 20})
		if err != nil {
			tb.Fatal(err)
		}
		r.closers = append(r.closers, sp.Close)
		r.mocks = append(r.mocks, m)
		reg := prometheus.NewRegistry()
		r.agentRegs = append(r.agentRegs, reg)
		run(agentCtx, &r.agents, "agent "+nodeName(i), newAgent([]agent.Source{src}, sp, reg).Run)
	}
	if cfg.simNodes > 0 {
		var srcs []agent.Source
		for i := range cfg.simNodes {
			srcs = append(srcs, sim.NewNode(16, simCluster, i, 8))
		}
		run(agentCtx, &r.agents, "simulated fleet", newAgent(srcs, nil, nil).Run)
	}
	ic := ingest.DefaultConfig()
	ic.Brokers, ic.Store, ic.GroupID = brokers, st, r.db
	ic.SamplesTopic, ic.EventsTopic, ic.DLQTopic = samples, events, dlq
	ic.BatchAge = cmp.Or(cfg.batchAge, ic.BatchAge)
	r.ingestReg = prometheus.NewRegistry()
	ic.Registerer = r.ingestReg
	in, err := ingest.New(ic)
	if err != nil {
		tb.Fatal(err)
	}
	r.ingestStart = time.Now()
	run(ingestCtx, &r.ingester, "ingest", in.Run)
	return r
}

// close stops the agents, then ingest (which flushes what it holds), closes what they used, and
// reports their errors.
func (r *rig) close(tb testing.TB) {
	r.closeOnce.Do(func() {
		r.stopAgents()
		r.agents.Wait()
		r.stopIngest()
		r.ingester.Wait()
		for i := len(r.closers) - 1; i >= 0; i-- {
			if err := r.closers[i](); err != nil {
				tb.Errorf("close: %v", err)
			}
		}
		close(r.runErrs)
		for err := range r.runErrs {
			tb.Error(err)
		}
	})
}

// mockGPUs is how many GPUs the mock nodes have.
func (r *rig) mockGPUs() int { return r.cfg.mockNodes * nvmlmock.GPUs }

var mockFilter = []query.Filter{{Dim: query.Cluster, Values: []string{mockCluster}}}

// waitReady waits until every mock GPU is in the fleet the failure reports read (gpu_1h), healthy,
// with its first health event stored: from then on a GPU's next health event is a change.
func (r *rig) waitReady(tb testing.TB, ctx context.Context) {
	tb.Helper()
	q := "SELECT uniqExact(node, gpu) FROM " + store.Table(r.db, schema.GPUEvents) +
		" WHERE cluster = {cluster:String} AND kind = 'health'"
	for {
		res, err := r.rowsRd.QueryWith(ctx, q, store.Params{"cluster": mockCluster})
		if err == nil && len(res.Rows) == 1 && res.Rows[0][0] == uint64(r.mockGPUs()) {
			h, herr := query.Health(ctx, r.drainR, query.FleetWindow{At: time.Now(), Filters: mockFilter})
			if herr == nil && h.Fleet.GPUs == uint64(r.mockGPUs()) && h.Fleet.Healthy == h.Fleet.GPUs {
				return
			}
			err = herr
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("the mock GPUs never all showed up healthy (last error: %v)", err)
		case err := <-r.runErrs:
			tb.Fatal(err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// inject queues Xid code on GPU gpu of mock node node, noting the time.
func (r *rig) inject(node, gpu int, code uint64, want health.State) *injection {
	inj := &injection{node: nodeName(node), gpu: gpu, uuid: nvmlmock.UUID(gpu), code: code, want: want}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey[key(inj.node, inj.uuid)] != nil {
		panic("detect: GPU " + key(inj.node, inj.uuid) + " injected twice: its state would not change again")
	}
	r.injected = append(r.injected, inj)
	r.byKey[key(inj.node, inj.uuid)] = inj
	inj.at = time.Now()
	r.mocks[node].XID(gpu, code)
	return inj
}

// watch polls gpu_events and the drain list every cfg.poll until ctx ends, each on its own
// session so that neither waits for the other.
func (r *rig) watch(ctx context.Context) {
	go r.pollEvery(ctx, r.pollRows)
	go r.pollEvery(ctx, r.pollDrain)
}

func (r *rig) pollEvery(ctx context.Context, poll func(context.Context) error) {
	t := time.NewTicker(r.cfg.poll)
	defer t.Stop()
	for {
		if err := poll(ctx); err != nil && ctx.Err() == nil {
			r.mu.Lock()
			r.pollErr = cmpErr(r.pollErr, err)
			r.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func cmpErr(old, err error) error {
	if old != nil {
		return old
	}
	return err
}

func (r *rig) pollRows(ctx context.Context) error {
	res, err := r.rowsRd.QueryWith(ctx, "SELECT node, toString(uuid), code, toUnixTimestamp64Milli(time) FROM "+
		store.Table(r.db, schema.GPUEvents)+" WHERE cluster = {cluster:String} AND kind = 'xid'",
		store.Params{"cluster": mockCluster})
	if err != nil {
		return fmt.Errorf("poll gpu_events: %w", err)
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, row := range res.Rows {
		node, _ := row[0].(string)
		uuid, _ := row[1].(string)
		code, _ := row[2].(uint64)
		ms, _ := row[3].(int64)
		if inj := r.byKey[key(node, uuid)]; inj != nil && inj.row.IsZero() && inj.code == code {
			inj.row, inj.tick = now, time.UnixMilli(ms)
		}
	}
	return nil
}

func (r *rig) pollDrain(ctx context.Context) error {
	start := time.Now()
	rep, err := query.Drain(ctx, r.drainR, query.FleetWindow{At: start, Filters: mockFilter}, query.DefaultDrainMax)
	if err != nil {
		return fmt.Errorf("poll drain list: %w", err)
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainRuns = append(r.drainRuns, now.Sub(start))
	for _, g := range rep.GPUs {
		if inj := r.byKey[key(g.Node, g.UUID)]; inj != nil && inj.drain.IsZero() && g.Action == inj.want.String() {
			inj.drain, inj.action, inj.reason = now, g.Action, g.Reason
		}
	}
	return nil
}

// waitAll waits until every injection's row and drain listing were seen.
func (r *rig) waitAll(tb testing.TB, ctx context.Context) {
	tb.Helper()
	for {
		r.mu.Lock()
		var missing []string
		for _, inj := range r.injected {
			if inj.row.IsZero() || inj.drain.IsZero() {
				missing = append(missing, fmt.Sprintf("%s Xid %d (row %t, drain %t)", key(inj.node, inj.uuid), inj.code, !inj.row.IsZero(), !inj.drain.IsZero()))
			}
		}
		err := r.pollErr
		r.mu.Unlock()
		if err != nil {
			tb.Fatal(err)
		}
		if len(missing) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("not seen before the deadline: %s", strings.Join(missing, "; "))
		case err := <-r.runErrs:
			tb.Fatal(err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// figures are the measured times of every injection, and of the drain queries.
type figures struct {
	row, drain     []time.Duration // injected → row seen, → drain listing seen
	tick, tickRow  []time.Duration // injected → the agent tick that read it, that tick → row seen
	rowDrain       []time.Duration // row seen → drain listing seen
	drainQueryTime []time.Duration
}

func (r *rig) figures() figures {
	r.mu.Lock()
	defer r.mu.Unlock()
	var f figures
	for _, inj := range r.injected {
		f.row = append(f.row, inj.row.Sub(inj.at))
		f.drain = append(f.drain, inj.drain.Sub(inj.at))
		// The row's time is whole ms and the tick may have begun just before the Xid was queued
		// while it polled NVML after: never less than 0.
		tick := max(0, inj.tick.Sub(inj.at))
		f.tick = append(f.tick, tick)
		f.tickRow = append(f.tickRow, inj.row.Sub(inj.at)-tick)
		f.rowDrain = append(f.rowDrain, inj.drain.Sub(inj.row))
	}
	f.drainQueryTime = slices.Clone(r.drainRuns)
	return f
}

// percentile is the nearest-rank p-quantile (0 < p ≤ 1) of ds: with 48 values p99 is the largest.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// histMean is the mean of histogram name over regs (sum over count), 0 when nothing was observed.
func histMean(tb testing.TB, name string, regs ...*prometheus.Registry) time.Duration {
	tb.Helper()
	sum, n := histSum(tb, name, regs...)
	if n == 0 {
		return 0
	}
	return time.Duration(sum / float64(n) * float64(time.Second))
}

// histSum is histogram name's sum and count over regs.
func histSum(tb testing.TB, name string, regs ...*prometheus.Registry) (sum float64, n uint64) {
	tb.Helper()
	for _, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			tb.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				sum += m.GetHistogram().GetSampleSum()
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return sum, n
}
