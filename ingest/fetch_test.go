package ingest

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// A partition's fetcher outlives a broker outage: the failed fetch is counted and retried with
// backoff, and once the broker is back the fetcher goes on from the message after the last one it
// passed on, with none skipped or repeated. Before, the fetcher returned on its first error, which
// left the partition unread (and, through kafka-go, ended the worker's whole generation).
func TestFetchRetriedAfterBrokerOutage(t *testing.T) {
	b := testenv.NewKafka(t)
	brokers := []string{b.Addr}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const topic = "fetch-outage"
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	produce := func(from, n int) {
		t.Helper()
		w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
		defer w.Close()
		var msgs []kafkago.Message
		for i := from; i < from+n; i++ {
			msgs = append(msgs, kafkago.Message{Value: []byte(fmt.Sprint(i))})
		}
		// Just after a restart the broker may still be electing the partition's leader.
		for {
			err := w.WriteMessages(ctx, msgs...)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("produce: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	in, err := New(Config{Brokers: brokers, Store: testenv.CHDB(t)})
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan kafkago.Message, 100)
	returned := make(chan struct{})
	fctx, stop := context.WithCancel(ctx)
	go func() {
		defer close(returned)
		in.fetch(fctx, fctx, topic, kafkago.PartitionAssignment{ID: 0, Offset: kafkago.FirstOffset}, msgs)
	}()
	receive := func(from, n int) {
		t.Helper()
		for want := from; want < from+n; want++ {
			select {
			case m := <-msgs:
				if string(m.Value) != fmt.Sprint(want) || m.Offset != int64(want) {
					t.Fatalf("fetched %q at offset %d, want %d at offset %d", m.Value, m.Offset, want, want)
				}
			case <-returned:
				t.Fatalf("the fetcher returned before message %d: the partition is left unread", want)
			case <-ctx.Done():
				t.Fatalf("message %d never fetched", want)
			}
		}
	}
	produce(0, 5)
	receive(0, 5)

	b.Stop(t)
	waitUntil(t, ctx, returned, "a fetch error to be reported", func() bool { return in.Stats().FetchErrors >= 1 })
	b.Resume(t)
	produce(5, 5)
	receive(5, 5)
	select {
	case m := <-msgs:
		t.Fatalf("fetched offset %d again", m.Offset)
	default:
	}
	if got := in.Stats().Fetched; got != 10 {
		t.Errorf("counted %d messages fetched, want 10", got)
	}
	stop()
	<-returned
}

// waitUntil polls cond until it holds, failing t if ctx ends or returned is closed first.
func waitUntil(t *testing.T, ctx context.Context, returned <-chan struct{}, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-returned:
			t.Fatalf("the fetcher returned while waiting for %s", what)
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
