package kafka_test

import (
	"context"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// BenchmarkSendCycle measures what one agent cycle's synchronous send costs against the real
// broker: one node's message, acks=all. kafka-go's default Writer BatchTimeout (1 s) holds every
// send for a batch that never fills; the agent's producer lingers 5 ms. Run:
//
//	go test -run '^$' -bench SendCycle -benchtime 5x ./internal/kafka/
func BenchmarkSendCycle(b *testing.B) {
	brokers := testenv.Kafka(b)
	topic := "bench.send." + time.Now().Format("150405.000000")
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: topic, Partitions: 1}}); err != nil {
		b.Fatal(err)
	}
	msg := wire.Message{Topic: topic, Key: []byte("node-1"), Value: make([]byte, 1500)}
	send := func(b *testing.B, s agent.Sender) {
		if err := s.Send(ctx, []wire.Message{msg}); err != nil { // first send dials and fetches metadata
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			if err := s.Send(ctx, []wire.Message{msg}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/send")
	}
	b.Run("kafka-go_default_BatchTimeout_1s", func(b *testing.B) {
		w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll}
		defer w.Close()
		send(b, writerSender{w})
	})
	b.Run("agent_producer_5ms", func(b *testing.B) {
		p := kafka.NewProducer(brokers)
		defer p.Close()
		send(b, p)
	})
}

type writerSender struct{ w *kafkago.Writer }

func (s writerSender) Send(ctx context.Context, msgs []wire.Message) error {
	kmsgs := make([]kafkago.Message, len(msgs))
	for i, m := range msgs {
		kmsgs[i] = kafkago.Message{Topic: m.Topic, Key: m.Key, Value: m.Value}
	}
	return s.w.WriteMessages(ctx, kmsgs...)
}
