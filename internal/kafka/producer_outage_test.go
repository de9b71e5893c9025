package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// A send that fails for every message — its broker stopped after the producer learned the
// partitions — says how many failed and why, once: kafka-go's own text repeats each message's
// error (30 KB in one log line for 296 messages in the fault matrix's cluster outage).
func TestProduceErrorSummarised(t *testing.T) {
	b := testenv.NewKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, []string{b.Addr}, []kafka.Topic{{Name: "gpu.samples", Partitions: 4}}); err != nil {
		t.Fatal(err)
	}
	p := kafka.NewProducer([]string{b.Addr})
	defer p.Close()
	msgs := make([]wire.Message, 300)
	for i := range msgs {
		msgs[i] = wire.Message{Topic: "gpu.samples", Key: []byte(fmt.Sprintf("node-%d", i%40)), Value: []byte("x")}
	}
	if err := p.Send(ctx, msgs[:10]); err != nil {
		t.Fatal(err)
	}
	b.Stop(t)
	err := p.Send(ctx, msgs)
	var pe *kafka.ProduceError
	if !errors.As(err, &pe) {
		t.Fatalf("send: %v, want a *ProduceError", err)
	}
	text := err.Error()
	if pe.Acked != 0 || !strings.Contains(text, "produce 300 messages: ") || !strings.Contains(text, "300 of 300 messages failed: ") ||
		len(text) > 1000 {
		t.Errorf("acked %d, error (%d bytes): %s", pe.Acked, len(text), text)
	}
}
