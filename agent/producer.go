package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/kafka"
)

// ProducerBatchMessages and ProducerBatchBytes are the Producer's batch limits (kafka-go's
// BatchSize and BatchBytes, per partition): the spooled sender keeps each request within them, so
// that a partition's share of a request is one produce request that succeeds or fails whole.
const (
	ProducerBatchMessages = 10000
	ProducerBatchBytes    = 16 << 20
)

// Producer sends agent messages to Kafka with kafka-go.
type Producer struct {
	w    *kafkago.Writer
	conn *kafka.Conn
}

// NewProducer returns a producer for brokers. Messages carry their topic; the key (node id) picks
// the partition, so each node's stream stays ordered.
func NewProducer(brokers []string) *Producer { return NewProducerConn(brokers, nil) }

// NewProducerConn is NewProducer connecting with conn's TLS and SASL settings (nil: plaintext).
func NewProducerConn(brokers []string, conn *kafka.Conn) *Producer {
	return &Producer{conn: conn, w: &kafkago.Writer{
		Addr:      kafkago.TCP(brokers...),
		Transport: conn.Transport(),
		Balancer:  &kafkago.Hash{},
		// kafka-go's default BatchTimeout (1 s) would add a second to every synchronous send of one
		// interval's messages; the whole cycle is handed over at once, so linger only briefly.
		BatchTimeout: 5 * time.Millisecond,
		BatchSize:    ProducerBatchMessages,
		BatchBytes:   ProducerBatchBytes,
		RequiredAcks: kafkago.RequireAll,
		Compression:  kafkago.Zstd,
		MaxAttempts:  3,
		WriteTimeout: 10 * time.Second,
	}}
}

// Send writes msgs and returns once the brokers acknowledged all of them. A write the brokers
// refuse for want of an ACL comes back as a *kafka.SettingError naming the user: retrying
// cannot cure it.
func (p *Producer) Send(ctx context.Context, msgs []kafkago.Message) error {
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("produce %d messages: %w", len(msgs), p.denied(msgs, err))
	}
	return nil
}

// denied returns err as the connection's refusal when a message was refused for want of an ACL.
func (p *Producer) denied(msgs []kafkago.Message, err error) error {
	const hint = "an admin grants it with Kafka ACLs (deploy/kafka/acls.sh)"
	var per kafkago.WriteErrors
	if errors.As(err, &per) {
		for i, e := range per {
			if e != nil && kafka.IsAuthorization(e) && i < len(msgs) {
				return p.conn.Denied("Write", "topic "+msgs[i].Topic, hint, e)
			}
		}
		return err
	}
	if kafka.IsAuthorization(err) && len(msgs) > 0 {
		return p.conn.Denied("Write", "topic "+msgs[0].Topic, hint, err)
	}
	return err
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }
