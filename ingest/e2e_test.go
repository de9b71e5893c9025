package ingest_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
	"github.com/gpufleet/gpufleet/query"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Simulated agents → real Kafka broker → ingest → chDB → query: every sample the agents took is
// counted exactly once, events too, and poison messages land in the dead-letter topic with a reason
// while the good ones around them are stored.
func TestEndToEndCountExact(t *testing.T) {
	brokers := testenv.Kafka(t)
	st := testenv.CHDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := migrate.Apply(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	// Topics named after the test database keep tests on a shared broker apart.
	samples, events, dlq := st.Database()+".samples", st.Database()+".events", st.Database()+".dlq"
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{
		{Name: samples, Partitions: 4}, {Name: events, Partitions: 4}, {Name: dlq, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}

	var srcs []agent.Source
	for i := range 5 {
		srcs = append(srcs, sim.NewNode(7, "e2e", i, 8))
	}
	prod := kafka.NewProducer(brokers)
	defer prod.Close()
	ag, err := agent.New(agent.Config{Sources: srcs, Sender: prod, Interval: 50 * time.Millisecond,
		SamplesTopic: samples, EventsTopic: events})
	if err != nil {
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithTimeout(ctx, 2*time.Second)
	defer stopAgent()
	agentDone := make(chan error, 1)
	go func() { agentDone <- ag.Run(agentCtx) }()

	// Poison interleaved with the agents' messages: garbage, an unsupported version, a time in 2001.
	poison := []wire.Message{
		{Topic: samples, Key: []byte("bad-1"), Value: []byte("not protobuf at all \xff\xff")},
		{Topic: samples, Key: []byte("bad-2"), Value: []byte{0x08, 0x09}}, // schema_version = 9
		{Topic: events, Key: []byte("bad-3"), Value: []byte{0x08, 0x01}},  // version 1 but no agent id
	}
	time.Sleep(300 * time.Millisecond)
	if err := prod.Send(ctx, poison); err != nil {
		t.Fatal(err)
	}

	in, err := ingest.New(ingest.Config{Brokers: brokers, Store: st, GroupID: st.Database(),
		SamplesTopic: samples, EventsTopic: events, DLQTopic: dlq, BatchAge: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ingestCtx, stopIngest := context.WithCancel(ctx)
	ingestDone := make(chan error, 1)
	go func() { ingestDone <- in.Run(ingestCtx) }()

	if err := <-agentDone; err != nil {
		t.Fatalf("agent: %v", err)
	}
	want := ag.Stats()
	if want.Samples == 0 || want.Samples%40 != 0 {
		t.Fatalf("agent took %d samples; want a positive multiple of 40 GPUs", want.Samples)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		s := in.Stats()
		if s.Samples >= want.Samples && s.Events >= want.Events && s.DLQ >= uint64(len(poison)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopIngest()
	if err := <-ingestDone; err != nil {
		t.Fatalf("ingest: %v", err)
	}

	sum, err := query.FleetSummary(ctx, st, time.Now().Add(-time.Hour), time.Now().Add(time.Minute), 3)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Samples != want.Samples {
		t.Errorf("query counts %d samples, agents took %d", sum.Samples, want.Samples)
	}
	if sum.GPUs != 40 || sum.Nodes != 5 {
		t.Errorf("query sees %d GPUs on %d nodes, want 40 on 5", sum.GPUs, sum.Nodes)
	}
	r, err := st.Query(ctx, "SELECT count() FROM "+store.Table(st.Database(), "gpu_events"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Rows[0][0].(uint64); got != want.Events {
		t.Errorf("gpu_events has %d rows, agents sent %d events", got, want.Events)
	}
	// Absent metrics are NULL, not zero: the simulated SXM boards have no fan.
	r, err = st.Query(ctx, "SELECT countIf(fan_pct IS NULL), countIf(gpu_util IS NULL) FROM "+store.Table(st.Database(), "gpu_samples"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Rows[0][0].(uint64) != want.Samples || r.Rows[0][1].(uint64) != 0 {
		t.Errorf("fan NULLs %v (want %d), util NULLs %v (want 0)", r.Rows[0][0], want.Samples, r.Rows[0][1])
	}

	// Every poison message is in the dead-letter topic with its reason and origin.
	rd := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: dlq, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer rd.Close()
	got := map[string]map[string]string{}
	readCtx, cancelRead := context.WithTimeout(ctx, 20*time.Second)
	defer cancelRead()
	for len(got) < len(poison) {
		m, err := rd.ReadMessage(readCtx)
		if err != nil {
			t.Fatalf("read dlq after %d messages: %v", len(got), err)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		got[string(m.Key)] = h
	}
	for _, p := range poison {
		h, ok := got[string(p.Key)]
		switch {
		case !ok:
			t.Errorf("poison %s not dead-lettered", p.Key)
		case h["reason"] == "" || h["source_topic"] != p.Topic || h["source_offset"] == "":
			t.Errorf("poison %s dead-lettered without reason/origin: %v", p.Key, h)
		}
	}
	t.Logf("agents took %d samples and %d events; all stored; %d dead letters: %v", want.Samples, want.Events, len(got), fmt.Sprint(got["bad-2"]["reason"]))
}
