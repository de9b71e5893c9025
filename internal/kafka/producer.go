package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/wire"
)

// ProducerBatchMessages and ProducerBatchBytes are the Producer's batch limits (kafka-go's
// BatchSize and BatchBytes, per partition): the agent's spooled sender keeps each request within
// them, so that a partition's share of a request is one produce request that succeeds or fails
// whole.
const (
	ProducerBatchMessages = 10000
	ProducerBatchBytes    = 16 << 20
)

// Producer sends agent messages to Kafka with kafka-go, acks=all: it is the agent's Sender.
type Producer struct {
	w    *kafkago.Writer
	conn *Conn
}

// NewProducer returns a producer for brokers. Messages carry their topic; the key (node id) picks
// the partition, so each node's stream stays ordered.
func NewProducer(brokers []string) *Producer { return NewProducerConn(brokers, nil) }

// NewProducerConn is NewProducer connecting with conn's TLS and SASL settings (nil: plaintext).
func NewProducerConn(brokers []string, conn *Conn) *Producer {
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
// refuse for want of an ACL comes back as a *SettingError naming the user: retrying cannot cure
// it. Any other failure is a *ProduceError saying how many of msgs, from the first, are in Kafka.
func (p *Producer) Send(ctx context.Context, msgs []wire.Message) error {
	kmsgs := make([]kafkago.Message, len(msgs))
	for i, m := range msgs {
		kmsgs[i] = kafkago.Message{Topic: m.Topic, Key: m.Key, Value: m.Value}
	}
	if err := p.w.WriteMessages(ctx, kmsgs...); err != nil {
		if refusal := p.denied(msgs, err); refusal != nil {
			return fmt.Errorf("produce %d messages: %w", len(msgs), refusal)
		}
		return NewProduceError(len(msgs), fmt.Errorf("produce %d messages: %w", len(msgs), err))
	}
	return nil
}

// denied returns the connection's refusal when a message was refused for want of an ACL, and nil
// otherwise.
func (p *Producer) denied(msgs []wire.Message, err error) error {
	const hint = "an admin grants it with Kafka ACLs (deploy/kafka/acls.sh)"
	var per kafkago.WriteErrors
	if errors.As(err, &per) {
		for i, e := range per {
			if e != nil && IsAuthorization(e) && i < len(msgs) {
				return p.conn.Denied("Write", "topic "+msgs[i].Topic, hint, e)
			}
		}
		return nil
	}
	if IsAuthorization(err) && len(msgs) > 0 {
		return p.conn.Denied("Write", "topic "+msgs[0].Topic, hint, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }

// ProduceError is a send of Messages messages that failed in whole or in part. The brokers
// acknowledged the first Acked of them: a sender that resends from the first unacknowledged one
// neither loses nor duplicates a message. TooLarge reports that a broker refused a message as
// larger than the topic's max.message.bytes, which the same request would meet again.
type ProduceError struct {
	Messages, Acked int
	TooLarge        bool
	Err             error
	text            string // Err's text with kafka-go's per-message list summarised
}

func (e *ProduceError) Error() string {
	if e.text != "" {
		return e.text
	}
	return e.Err.Error()
}
func (e *ProduceError) Unwrap() error { return e.Err }

// NewProduceError reads a failed kafka-go write of n messages: kafkago.WriteErrors names each
// message's outcome (nil where the broker acknowledged it), any other error means none is known to
// be in Kafka.
func NewProduceError(n int, err error) *ProduceError {
	pe := &ProduceError{Messages: n, Err: err}
	var werrs kafkago.WriteErrors
	if !errors.As(err, &werrs) {
		pe.TooLarge = errors.Is(err, kafkago.MessageSizeTooLarge)
		return pe
	}
	for _, e := range werrs {
		if errors.Is(e, kafkago.MessageSizeTooLarge) {
			pe.TooLarge = true
		}
	}
	for pe.Acked < min(n, len(werrs)) && werrs[pe.Acked] == nil {
		pe.Acked++
	}
	// kafka-go's text lists every message's error: a broker outage made one log line of 30 KB for
	// 296 messages. Say how many failed and the distinct reasons, a few of them.
	pe.text = strings.Replace(err.Error(), werrs.Error(), summarize(werrs), 1)
	return pe
}

// summarize is werrs as "F of N messages failed: the distinct errors (at most three, each at most
// 200 bytes), and how many more".
func summarize(werrs kafkago.WriteErrors) string {
	const show, long = 3, 200
	var distinct []string
	seen := map[string]bool{}
	failed, more := 0, 0
	for _, e := range werrs {
		if e == nil {
			continue
		}
		failed++
		t := e.Error()
		if seen[t] {
			continue
		}
		seen[t] = true
		if len(distinct) == show {
			more++
			continue
		}
		if len(t) > long {
			t = strings.ToValidUTF8(t[:long], "") + "…"
		}
		distinct = append(distinct, t)
	}
	s := fmt.Sprintf("%d of %d messages failed: %s", failed, len(werrs), strings.Join(distinct, "; "))
	if more > 0 {
		s += fmt.Sprintf("; and %d other errors", more)
	}
	return s
}
