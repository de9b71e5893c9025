// Package agent samples GPUs on a fixed interval and streams each node's batch to Kafka
// (topic gpu.samples, key = node) with its events on gpu.events.
package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/gpufleet/gpufleet/agent/attribution"
	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/config"
	"github.com/gpufleet/gpufleet/internal/health"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/retry"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/internal/wire/wirepb"
)

// Source is one node's GPUs: the simulator (agent/sim) or NVML.
type Source interface {
	// Identity names the node's cluster and host.
	Identity() (cluster, node string)
	// Sample appends one reading of every GPU at t to b and any events it raised to ev.
	Sample(t time.Time, b *wirepb.SampleBatch, ev []*wirepb.Event) []*wirepb.Event
}

// Sender delivers encoded messages and returns once all of them are acknowledged; internal/kafka's
// Producer is the Kafka one. A failure that delivered some of msgs is a *kafka.ProduceError naming
// how many, from the first, arrived (the spooled sender does not send those again); a refusal for
// the agent's settings (an ACL, a password) is a *kafka.SettingError, and stops the agent.
type Sender interface {
	Send(ctx context.Context, msgs []wire.Message) error
}

// Config configures an Agent. The zero value of every field but Sources and Sender works.
type Config struct {
	Sources []Source
	Sender  Sender
	// Interval between samples; default 1 s.
	Interval time.Duration
	// SendEvery is how many samples go into one message: the send interval is SendEvery × Interval.
	// Default 1. At 100 ms sampling, 10 keeps the Kafka request rate at one per node per second and
	// lets ingest decode ten instants per message (4.4 M samples/s per core instead of 1.8 M).
	SendEvery int
	// SamplesTopic and EventsTopic default to wire.SamplesTopic and wire.EventsTopic.
	SamplesTopic, EventsTopic string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the agent's self-metrics when set.
	Registerer prometheus.Registerer
	// Jobs, when set, names the job on each GPU, by index or UUID (see agent/attribution: Slurm
	// mapping files, the kubelet's pod resources); it is asked once per message and overrides the
	// job the source reports. When it fails the message goes out without jobs and a warning.
	Jobs func(ctx context.Context) (attribution.Assignment, error)
	// Rack and Pool label every batch when set (--rack, --pool); otherwise a source that knows its
	// placement (see Placer) labels its own.
	Rack, Pool string
	// Spool, when set, receives every batch before it is sent, and batches are sent from it in
	// order: sampling goes on while Kafka is unreachable, and a restart sends what was left.
	Spool *spool.Spool
	// MaxSendRecords bounds how many spooled batches (one cycle's messages each) one Send carries
	// while the spool holds a backlog; default 256, and no more than keeps a request within the
	// producer's batch size (kafka.ProducerBatchMessages, at two messages per source). 1 sends one batch
	// per request, which after an outage could not catch up with sampling at 10–20 ms.
	MaxSendRecords int
	// MaxSendBytes bounds the spooled bytes of one Send (its first batch goes whatever its size);
	// default 512 KiB, so that one partition's batch stays under the broker's default
	// max.message.bytes (1 MiB) even if it did not compress. At most kafka.ProducerBatchBytes.
	MaxSendBytes int
	// Observe, when set, is handed each source's batch after every sample, in the sampling loop:
	// its rows from first on are the new ones, with their jobs attributed, and events are the ones
	// the sample raised. It must neither keep nor modify b or events, which are sent afterwards
	// (agent/dcgmcompat copies the readings it serves on /metrics).
	Observe func(b *wirepb.SampleBatch, first int, events []*wirepb.Event)
	// Health, when set, evaluates every GPU's health state after each sample (internal/health,
	// docs/health.md) and adds an EVENT_KIND_HEALTH event whenever a GPU's state changes, and for
	// each GPU's first evaluation; Observe sees those events too. Nil evaluates none.
	Health *health.Config
	// Speed runs the agent's clock that many times faster than real time, for load tests with
	// simulated sources (gpufleet simulate --speed): it samples every Interval / Speed and stamps
	// each sample Start + Speed × the time since Run began, so the fleet's readings are those of
	// Speed times as many GPUs at Interval. Default 1, the wall clock; sources that read hardware
	// make no sense at any other.
	Speed int
	// Start is the sample time of the first cycle when Speed is over 1; zero is the time Run
	// begins. A start in the past keeps the stamps behind the wall clock (ingest refuses samples
	// more than its MaxClockAhead ahead of it).
	Start time.Time
}

// DefaultMaxSendRecords and DefaultMaxSendBytes are Config.MaxSendRecords and MaxSendBytes when
// zero.
const (
	DefaultMaxSendRecords = 256
	DefaultMaxSendBytes   = 512 << 10
)

// limit is one bounded setting of Config: its range and what New makes of a zero.
type limit struct {
	field    string
	min, max int64             // max 0: no upper bound
	def      int64             // New's value for zero
	ptr      func(*Config) any // *int or *time.Duration
}

// limits are Config's bounded settings, the one table Validate checks and New takes defaults from.
var limits = []limit{
	{"Interval", int64(10 * time.Millisecond), 0, int64(time.Second), func(c *Config) any { return &c.Interval }},
	{"SendEvery", 1, 600, 1, func(c *Config) any { return &c.SendEvery }},
	{"Speed", 1, 1000, 1, func(c *Config) any { return &c.Speed }},
	{"MaxSendRecords", 1, 0, DefaultMaxSendRecords, func(c *Config) any { return &c.MaxSendRecords }},
	// The producer's batch limit: a larger Send could not go out as one request.
	{"MaxSendBytes", 1, kafka.ProducerBatchBytes, DefaultMaxSendBytes, func(c *Config) any { return &c.MaxSendBytes }},
}

func (l limit) get(c *Config) int64 {
	switch p := l.ptr(c).(type) {
	case *int:
		return int64(*p)
	case *time.Duration:
		return int64(*p)
	}
	panic("agent: limit " + l.field + " is neither int nor time.Duration")
}

func (l limit) set(c *Config, v int64) {
	switch p := l.ptr(c).(type) {
	case *int:
		*p = int(v)
	case *time.Duration:
		*p = time.Duration(v)
	}
}

// show writes v as the field's type does (10ms, not 10000000).
func (l limit) show(c *Config, v int64) any {
	if _, ok := l.ptr(c).(*time.Duration); ok {
		return time.Duration(v)
	}
	return v
}

func (l limit) check(c *Config) error {
	v := l.get(c)
	if v >= l.min && (l.max == 0 || v <= l.max) {
		return nil
	}
	problem := fmt.Sprintf("must be at least %v", l.show(c, l.min))
	if l.max != 0 {
		problem = fmt.Sprintf("must be %v..%v", l.show(c, l.min), l.show(c, l.max))
	}
	return &config.FieldError{Field: l.field, Value: l.show(c, v), Problem: problem}
}

// DefaultConfig returns a Config with every bounded setting at its default (what New makes of a
// zero), for a caller that sets each one and validates the lot, as the CLI does: its flags'
// defaults come from here.
func DefaultConfig() Config {
	var c Config
	for _, l := range limits {
		l.set(&c, l.def)
	}
	return c
}

// Validate checks every bounded setting as it stands, zeros included (New fills those with the
// defaults first). It leaves out Sources and Sender, so that a caller can check the settings
// before opening anything. The error is a *config.FieldError.
func (c Config) Validate() error {
	for _, l := range limits {
		if err := l.check(&c); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	if c.Speed > 1 && c.Interval/time.Duration(c.Speed) < time.Millisecond {
		return fmt.Errorf("agent: %w", &config.FieldError{Field: "Speed", Value: c.Speed,
			Problem: fmt.Sprintf("samples every %s at Interval %s: at most %d times real time", c.Interval/time.Duration(c.Speed), c.Interval, c.Interval/time.Millisecond)})
	}
	return nil
}

// Placer is a Source that knows its node's rack and pool (the simulator does; NVML does not).
type Placer interface {
	Placement() (rack, pool string)
}

// Stats counts what the agent did; read it with Agent.Stats.
type Stats struct {
	Samples uint64 // GPU readings taken (rows)
	Batches uint64 // sample messages delivered
	Events  uint64 // events delivered
	// MissedTicks are intervals in which no sample was taken because the previous cycle (an NVML
	// read, or a send without a spool) took longer than the interval.
	MissedTicks uint64
}

// Agent runs the sampling loop.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	seq  []uint64
	msgs []wire.Message
	// Samples and events taken since the last send, per source, and how many cycles they hold.
	pending   []*wirepb.SampleBatch
	pendingEv [][]*wirepb.Event
	held      int

	samples, batches, events, missed atomic.Uint64
	sendErrors                       prometheus.Counter
	sendSeconds                      prometheus.Histogram
	// Missed ticks not yet logged, and when the last line about them was.
	missedUnlogged uint64
	missedLogged   time.Time
	health         *healthEval // nil without Config.Health
	// tick is the real time between cycles: Interval, or Interval / Speed.
	tick time.Duration
}

// New checks cfg and returns an agent ready to Run.
func New(cfg Config) (*Agent, error) {
	if len(cfg.Sources) == 0 {
		return nil, fmt.Errorf("agent: no GPU source (Sources)")
	}
	if cfg.Sender == nil {
		return nil, fmt.Errorf("agent: no Sender")
	}
	if cfg.SamplesTopic == "" {
		cfg.SamplesTopic = wire.SamplesTopic
	}
	if cfg.EventsTopic == "" {
		cfg.EventsTopic = wire.EventsTopic
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Zero is the default; anything else out of range is refused, not replaced.
	for _, l := range limits {
		if l.get(&cfg) == 0 {
			l.set(&cfg, l.def)
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// A request's messages for one partition must fit one producer batch: kafka-go writes the
	// batches of a partition one after another, and if the first failed and a second succeeded,
	// the resend would put a node's batches out of order.
	cfg.MaxSendRecords = min(cfg.MaxSendRecords, max(1, kafka.ProducerBatchMessages/(2*len(cfg.Sources))))
	a := &Agent{cfg: cfg, log: cfg.Logger, seq: make([]uint64, len(cfg.Sources)), tick: cfg.Interval / time.Duration(cfg.Speed),
		pending: make([]*wirepb.SampleBatch, len(cfg.Sources)), pendingEv: make([][]*wirepb.Event, len(cfg.Sources)),
		sendErrors:  prometheus.NewCounter(prometheus.CounterOpts{Name: "gpufleet_agent_send_errors_total", Help: "Failed sends to Kafka (each is retried)."}),
		sendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "gpufleet_agent_send_seconds", Help: "Time of one acknowledged send to Kafka: one interval's messages, or, from a spool holding a backlog, up to MaxSendRecords intervals'.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if cfg.Health != nil {
		a.health = newHealthEval(*cfg.Health, len(cfg.Sources), cfg.Logger)
	}
	if sp := cfg.Spool; sp != nil {
		// Sequence numbers continue from the last run's, so ingest does not read a restart as a gap.
		saved := sp.Seq()
		for i, src := range cfg.Sources {
			_, node := src.Identity()
			a.seq[i] = saved[node]
		}
	}
	if r := cfg.Registerer; r != nil {
		if sp := cfg.Spool; sp != nil {
			const dropped = "gpufleet_agent_spool_dropped_samples_total"
			r.MustRegister(
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpufleet_agent_spool_batches", Help: "Batches in the spool (on disk, and in memory while the disk refuses writes), not yet acknowledged by Kafka."}, func() float64 { return float64(sp.Stats().Batches) }),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpufleet_agent_spool_memory_batches", Help: "Batches the disk refused, held in memory (bounded) until it takes them or Kafka does."}, func() float64 { return float64(sp.Stats().MemoryBatches) }),
				prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpufleet_agent_spool_bytes", Help: "Bytes in the on-disk spool."}, func() float64 { return float64(sp.Stats().Bytes) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: dropped, Help: "Samples dropped: reason cap, the spool reached its size cap; reason disk, the disk refused them and the memory queue was full.",
					ConstLabels: prometheus.Labels{"reason": "cap"}}, func() float64 { return float64(sp.Stats().DroppedRows) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: dropped, Help: "Samples dropped: reason cap, the spool reached its size cap; reason disk, the disk refused them and the memory queue was full.",
					ConstLabels: prometheus.Labels{"reason": "disk"}}, func() float64 { return float64(sp.Stats().UnspooledRows) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_agent_spool_write_errors_total", Help: "Spool writes and fsyncs the disk refused (full or failing); the batch waits in memory."}, func() float64 { return float64(sp.Stats().WriteErrors) }),
			)
		}
		r.MustRegister(a.sendErrors, a.sendSeconds,
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_agent_missed_ticks_total", Help: "Sampling intervals skipped because a cycle took longer than the interval."}, func() float64 { return float64(a.missed.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_agent_samples_total", Help: "GPU readings taken."}, func() float64 { return float64(a.samples.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_agent_batches_sent_total", Help: "Sample batches delivered to Kafka."}, func() float64 { return float64(a.batches.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "gpufleet_agent_events_sent_total", Help: "GPU events delivered to Kafka."}, func() float64 { return float64(a.events.Load()) }),
		)
	}
	return a, nil
}

// Stats returns what has been sampled and delivered so far.
func (a *Agent) Stats() Stats {
	return Stats{Samples: a.samples.Load(), Batches: a.batches.Load(), Events: a.events.Load(), MissedTicks: a.missed.Load()}
}

// Run samples every interval until ctx is done, sending every SendEvery samples. The samples held
// when ctx ends are still delivered (bounded by flushTimeout), so a SIGTERM loses no sample taken.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Spool != nil {
		return a.runSpooled(ctx)
	}
	now := a.clock()
	t := time.NewTicker(a.tick)
	defer t.Stop()
	last := time.Now()
	for {
		if err := a.cycle(ctx, now()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return a.send(ctx)
		case tick := <-t.C:
			a.countMissed(last, tick)
			last = tick
		}
	}
}

// clock returns what stamps each cycle's samples: the wall clock, or at Speed over 1 a clock that
// runs Speed times as fast from Start.
func (a *Agent) clock() func() time.Time {
	if a.cfg.Speed <= 1 {
		return time.Now
	}
	began := time.Now()
	start := a.cfg.Start
	if start.IsZero() {
		start = began
	}
	speed := time.Duration(a.cfg.Speed)
	return func() time.Time { return start.Add(time.Since(began) * speed) }
}

// missedLogEvery spaces the log lines about missed ticks: a host that is too slow for its interval
// is slow every cycle.
const missedLogEvery = time.Minute

// countMissed counts the ticks the ticker dropped between two it delivered, prev and now: it
// delivers the time each tick was due, so the gap is a whole number of intervals.
func (a *Agent) countMissed(prev, now time.Time) {
	n := (now.Sub(prev) + a.tick/2) / a.tick
	if n <= 1 {
		return
	}
	a.missed.Add(uint64(n - 1))
	a.missedUnlogged += uint64(n - 1)
	if !a.missedLogged.IsZero() && now.Sub(a.missedLogged) < missedLogEvery {
		return
	}
	a.log.Warn("sampling fell behind: a cycle took longer than the interval, ticks skipped",
		slog.Uint64("skipped", a.missedUnlogged), slog.Duration("interval", a.tick),
		slog.Duration("last_cycle", now.Sub(prev)), slog.Uint64("skipped_total", a.missed.Load()))
	a.missedUnlogged, a.missedLogged = 0, now
}

// runSpooled samples into the spool while a second goroutine sends from it, so a Kafka outage
// never stops sampling. On shutdown the sender goes on while Kafka takes batches (up to
// flushTimeout) and stops at the first failed send, or after drainGrace without a successful one:
// what is left on disk is sent by the next run, so with Kafka down the agent exits at once and
// with status 0. Only batches the disk refused (held in memory) are worth waiting for.
func (a *Agent) runSpooled(ctx context.Context) error {
	sp := a.cfg.Spool
	sendCtx, stopSend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSend()
	sent := make(chan error, 1)
	drain := make(chan struct{})
	go func() { sent <- a.sendFromSpool(sendCtx, drain) }()
	now := a.clock()
	t := time.NewTicker(a.tick)
	defer t.Stop()
	last := time.Now()
	var err error
loop:
	for {
		if err = a.cycle(ctx, now()); err != nil {
			break
		}
		select {
		case <-ctx.Done():
			err = a.send(ctx)
			break loop
		case tick := <-t.C:
			a.countMissed(last, tick)
			last = tick
		case serr := <-sent:
			return serr
		}
	}
	drained := a.batches.Load()
	close(drain)
	grace := time.AfterFunc(drainGrace, func() {
		if sp.Durable() && a.batches.Load() == drained {
			stopSend() // a send hanging on an unreachable broker
		}
	})
	defer grace.Stop()
	timer := time.AfterFunc(flushTimeout, stopSend)
	defer timer.Stop()
	serr := <-sent
	if err == nil && serr != nil && !errors.Is(serr, context.Canceled) {
		err = serr
	}
	lostBatches, lostRows := sp.Persist()
	if st := sp.Stats(); st.Batches > 0 {
		a.log.Info("batches left in the spool for the next run", slog.Uint64("batches", st.Batches-lostBatches), slog.Uint64("bytes", st.Bytes))
	}
	if err == nil && lostBatches > 0 {
		err = fmt.Errorf("agent: %d batches (%d samples) the disk refused were not delivered before shutdown: lost", lostBatches, lostRows)
	}
	return err
}

// sendFromSpool delivers spooled batches in order, many per request (MaxSendRecords,
// MaxSendBytes), each retried until acknowledged; the spool's head moves past a batch only once
// Kafka acknowledged all of its messages. Once drain is closed it returns when the spool is empty,
// or at the first failed send while everything unsent is on disk.
func (a *Agent) sendFromSpool(ctx context.Context, drain <-chan struct{}) error {
	sp := a.cfg.Spool
	draining := false
	// Not retry.Do: a wait also ends when drain closes, and a failed send may have delivered part.
	backoff := sendPolicy.Backoff()
	limit := a.cfg.MaxSendRecords
	var msgs []wire.Message
	for {
		bs, err := sp.PeekN(limit, int64(a.cfg.MaxSendBytes))
		if err != nil {
			return err
		}
		if len(bs) == 0 {
			if draining {
				return nil
			}
			select {
			case <-drain:
				draining, drain = true, nil
			case <-ctx.Done():
				return ctx.Err()
			case <-sp.Ready():
			case <-time.After(a.tick):
			}
			continue
		}
		msgs = msgs[:0]
		for _, b := range bs {
			msgs = append(msgs, b.Msgs...)
		}
		start := time.Now()
		err = a.cfg.Sender.Send(ctx, msgs)
		if err == nil {
			a.sendSeconds.Observe(time.Since(start).Seconds())
			a.acked(bs, len(bs))
			backoff.Reset()
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if refused(err) {
			sp.SendFailed()
			return fmt.Errorf("agent send: %w", err)
		}
		// The producer reports per message: the batches before the first with a failed message
		// are in Kafka and are not sent again.
		ok, tooLarge := ackedPrefix(err, bs)
		a.acked(bs, ok)
		if tooLarge && limit > 1 {
			// A topic whose max.message.bytes is below what this request compressed to: smaller
			// requests, for the rest of the run, rather than the same refusal forever.
			limit = max(1, (len(bs)-ok)/2)
			a.log.Warn("kafka refused a request as too large; sending fewer batches per request",
				slog.Int("batches_per_request", limit), slog.Int("max_send_bytes", a.cfg.MaxSendBytes))
		}
		a.sendErrors.Inc()
		sp.SendFailed()
		d := backoff.Next()
		a.log.Warn("send to kafka failed, retrying", slog.Any("err", err), slog.Duration("backoff", d),
			slog.Int("batches", len(bs)-ok))
		for wait := time.After(d); ; {
			if draining && sp.Durable() {
				return nil
			}
			select {
			case <-drain:
				draining, drain = true, nil
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-wait:
			}
			break
		}
	}
}

// acked removes the first n of the batches sent from the spool and counts them as delivered.
func (a *Agent) acked(bs []spool.Batch, n int) {
	if n == 0 {
		return
	}
	a.cfg.Spool.AckN(n)
	var events uint64
	for _, b := range bs[:n] {
		events += b.Events
	}
	a.batches.Add(uint64(n * len(a.cfg.Sources)))
	a.events.Add(events)
}

// ackedPrefix reads a failed send's error: how many of bs, from the first, had every message
// acknowledged (a *kafka.ProduceError counts them; any other error, none), and whether a message
// was refused as too large.
func ackedPrefix(err error, bs []spool.Batch) (n int, tooLarge bool) {
	var pe *kafka.ProduceError
	if !errors.As(err, &pe) {
		return 0, false
	}
	acked := pe.Acked
	for n = 0; n < len(bs) && len(bs[n].Msgs) <= acked; n++ {
		acked -= len(bs[n].Msgs)
	}
	return n, pe.TooLarge
}

// drainGrace bounds the wait at shutdown for a first successful send while everything unsent is on
// disk: the next run sends the rest, and a stop timeout is not spent waiting for Kafka.
const drainGrace = 5 * time.Second

// sendPolicy spaces the retries of a send from 100 ms to 5 s. Decorrelated jitter keeps each wait
// at 100 ms or more while the agents of a fleet, which all lose the same broker at once, spread
// their retries rather than returning together.
var sendPolicy = retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: retry.Decorrelated}

const flushTimeout = 30 * time.Second

// cycle takes one reading of every source and sends once SendEvery readings are held.
func (a *Agent) cycle(ctx context.Context, now time.Time) error {
	for i, src := range a.cfg.Sources {
		if a.pending[i] == nil {
			cluster, node := src.Identity()
			a.pending[i] = &wirepb.SampleBatch{AgentId: node, Cluster: cluster, Node: node, Rack: a.cfg.Rack, Pool: a.cfg.Pool,
				IntervalMs: intervalMs(a.cfg.Interval)}
			if p, ok := src.(Placer); ok {
				rack, pool := p.Placement()
				a.pending[i].Rack, a.pending[i].Pool = cmp.Or(a.cfg.Rack, rack), cmp.Or(a.cfg.Pool, pool)
			}
		}
		before, evBefore := len(a.pending[i].TimeUnixMs), len(a.pendingEv[i])
		a.pendingEv[i] = src.Sample(now, a.pending[i], a.pendingEv[i])
		a.samples.Add(uint64(len(a.pending[i].TimeUnixMs) - before))
		if before == 0 && a.cfg.Jobs != nil {
			a.attribute(ctx, a.pending[i])
		}
		if a.health != nil {
			a.pendingEv[i] = a.health.observe(ctx, i, a.pending[i], before, a.pendingEv[i], evBefore)
		}
		if a.cfg.Observe != nil {
			a.cfg.Observe(a.pending[i], before, a.pendingEv[i][evBefore:])
		}
	}
	a.held++
	if a.held < a.cfg.SendEvery {
		return nil
	}
	return a.send(ctx)
}

// attribute sets each GPU's job from cfg.Jobs on copies of the source's GPU identities.
func (a *Agent) attribute(ctx context.Context, b *wirepb.SampleBatch) {
	jobs, err := a.cfg.Jobs(ctx)
	if err != nil {
		a.log.Warn("job attribution", slog.Any("err", err))
		return
	}
	gpus := make([]*wirepb.GPU, len(b.Gpus))
	for i, g := range b.Gpus {
		c := proto.CloneOf(g)
		c.JobId = jobs.Job(g.Index, g.Uuid)
		gpus[i] = c
	}
	b.Gpus = gpus
}

// send encodes what is held (one sample message per source, and its events) and delivers it.
func (a *Agent) send(ctx context.Context) error {
	if a.held == 0 {
		return nil
	}
	a.msgs = a.msgs[:0]
	var nev uint64
	for i, b := range a.pending {
		a.seq[i]++
		b.Seq = a.seq[i]
		val, err := wire.EncodeSamples(b)
		if err != nil {
			return fmt.Errorf("agent send: %w", err)
		}
		a.msgs = append(a.msgs, wire.Message{Topic: a.cfg.SamplesTopic, Key: []byte(b.Node), Value: val})
		if ev := a.pendingEv[i]; len(ev) > 0 {
			eb := &wirepb.EventBatch{AgentId: b.AgentId, Seq: a.seq[i], Cluster: b.Cluster, Node: b.Node, Rack: b.Rack, Pool: b.Pool, Events: ev}
			val, err := wire.EncodeEvents(eb)
			if err != nil {
				return fmt.Errorf("agent send: %w", err)
			}
			nev += uint64(len(ev))
			a.msgs = append(a.msgs, wire.Message{Topic: a.cfg.EventsTopic, Key: []byte(b.Node), Value: val})
		}
	}
	if sp := a.cfg.Spool; sp != nil {
		b := spool.Batch{Events: nev}
		seq := map[string]uint64{}
		for i, p := range a.pending {
			b.Rows += uint64(len(p.TimeUnixMs))
			seq[p.Node] = a.seq[i]
		}
		b.Msgs = append(b.Msgs, a.msgs...)
		sp.Append(b, seq)
	} else {
		if err := a.deliverMsgs(ctx, a.msgs); err != nil {
			return err
		}
		a.batches.Add(uint64(len(a.cfg.Sources)))
		a.events.Add(nev)
	}
	for _, b := range a.pending {
		resetBatch(b)
	}
	for i := range a.pendingEv {
		a.pendingEv[i] = a.pendingEv[i][:0]
	}
	a.held = 0
	return nil
}

// resetBatch empties a sent batch for the next cycles and keeps its metric columns and their
// room: a batch rebuilt per send was the bulk of a cycle's allocations (agent/nvml's
// TestSampleAllocs holds a refilled one to none). Gpus goes, for the source to set again and
// attribution to copy afresh; the labels stay, as a source's identity and placement do.
func resetBatch(b *wirepb.SampleBatch) {
	b.Gpus, b.TimeUnixMs, b.Gpu = nil, b.TimeUnixMs[:0], b.Gpu[:0]
	for _, c := range b.Metrics {
		c.Values, c.Counts, c.Present = c.Values[:0], c.Counts[:0], c.Present[:0]
	}
}

// refused reports a send the brokers refused for the agent's settings (an ACL, a password): the
// same on every retry, so the agent stops with it, as it does at start-up.
func refused(err error) bool { return errors.As(err, new(*kafka.SettingError)) }

// deliverMsgs sends msgs, retrying with capped backoff. Once ctx ends it keeps trying for
// flushTimeout so the last cycle is not thrown away on shutdown.
func (a *Agent) deliverMsgs(ctx context.Context, msgs []wire.Message) error {
	sendCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		time.AfterFunc(flushTimeout, cancel)
	})
	defer stop()
	var last error
	err := retry.Do(sendCtx, sendPolicy, func(ctx context.Context) error {
		start := time.Now()
		last = a.cfg.Sender.Send(ctx, msgs)
		if last == nil {
			a.sendSeconds.Observe(time.Since(start).Seconds())
			return nil
		}
		a.sendErrors.Inc()
		if refused(last) {
			return retry.Permanent(last)
		}
		return last
	}, retry.OnRetry(func(_ int, err error, wait time.Duration) {
		a.log.Warn("send to kafka failed, retrying", slog.Any("err", err), slog.Duration("backoff", wait))
	}))
	switch {
	case err == nil:
		return nil
	case refused(err):
		return fmt.Errorf("deliver %d messages: %w", len(msgs), err)
	}
	// Without MaxTries, Do gives up only once sendCtx ends.
	return fmt.Errorf("deliver %d messages: gave up: %w", len(msgs), last)
}

// intervalMs is the sampling period as the wire's interval_ms, whole milliseconds (Validate keeps
// it at 10 ms or more), saturating where a uint32 ends.
func intervalMs(d time.Duration) uint32 {
	return uint32(min(d.Milliseconds(), math.MaxUint32))
}
