package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/ingest"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/schema/migrate"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// On a real three-broker cluster with topics at three replicas and min.insync.replicas 2, the
// leader of a partition being written (acks=all) and read is killed with kill -9 mid-stream: every
// sample is stored exactly once, in gpu_samples and in every rollup.
func TestLeaderKillNoLossNoDuplicates(t *testing.T) {
	c := testenv.NewKafkaCluster(t)
	r := &rig{brokers: c.Addrs, st: testenv.CHDB(t), gpusPerNode: 8}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := migrate.Apply(ctx, r.st, nil); err != nil {
		t.Fatal(err)
	}
	r.samples, r.events, r.dlq = r.st.Database()+".samples", r.st.Database()+".events", r.st.Database()+".dlq"
	var topics []kafka.Topic
	for name, parts := range map[string]int{r.samples: 4, r.events: 4, r.dlq: 1} {
		topics = append(topics, kafka.Topic{Name: name, Partitions: parts, ReplicationFactor: 3, MinInsyncReplicas: 2})
	}
	if err := kafka.EnsureTopics(ctx, r.brokers, topics); err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(r.config("g"))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(wctx) }()

	var want uint64
	send := func(round int) {
		// A batch the writer gave up on is sent again whole: what reached the broker the first
		// time is a producer retry, which ingest must store once.
		for attempt := 0; ; attempt++ {
			n, err := r.send(8, 1+round*4, 4)
			if err == nil {
				want += n
				return
			}
			if attempt == 5 {
				t.Fatalf("round %d: %v", round, err)
			}
			t.Logf("round %d: %v; sending again", round, err)
		}
	}
	for round := range 3 {
		send(round)
	}
	waitFor(t, 2*time.Minute, "the first rounds stored", func() bool { n, _ := r.stored(t); return n > 0 })
	leader := c.LeaderOf(t, r.samples, 0)
	t.Logf("kill -9 node %d (%s), the leader of %s/0", leader+1, c.Addrs[leader], r.samples)
	c.Kill9(t, leader)
	for round := 3; round < 8; round++ {
		send(round)
	}
	waitFor(t, 3*time.Minute, "every row", func() bool { n, _ := r.stored(t); return n >= want })
	time.Sleep(time.Second) // a duplicate would arrive after the last original
	stop()
	if err := <-done; err != nil {
		t.Errorf("ingest: %v", err)
	}
	rows, distinct := r.stored(t)
	if rows != want || distinct != rows {
		t.Fatalf("gpu_samples holds %d rows (%d distinct), produced %d", rows, distinct, want)
	}
	r.checkRollups(t)
	t.Logf("%d rows exact through the leader's kill -9; ingest stats %+v", rows, in.Stats())
}
