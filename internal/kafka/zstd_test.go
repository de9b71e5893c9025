package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// Messages the lean encoder compressed reach a real broker and come back to a kafka-go reader as
// they were sent, one at a time and in a spool drain's large request alike.
func TestLeanZstdThroughBroker(t *testing.T) {
	kafka.InstallLeanZstd()
	if name := fmt.Sprintf("%T", compress.Zstd.Codec()); name != "*kafka.leanZstd" {
		t.Fatalf("zstd codec is %s after InstallLeanZstd", name)
	}
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const topic = "lean.zstd"
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	p := kafka.NewProducer(brokers)
	defer p.Close()
	var sent []wire.Message
	for i, n := range []int{1, 1, 2000} { // two sends of one message, then a drain of 2,000
		var msgs []wire.Message
		for j := range n {
			msgs = append(msgs, wire.Message{Topic: topic, Key: []byte("node-1"),
				Value: fmt.Appendf(nil, "send %d message %d: gpu util 97 temp 65 power 612000 %0200d", i, j, j)})
		}
		if err := p.Send(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, msgs...)
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i, want := range sent {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if string(m.Value) != string(want.Value) {
			t.Fatalf("message %d: %q, want %q", i, m.Value, want.Value)
		}
	}
}
