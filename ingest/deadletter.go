package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// truncatedBytes is how much of a refused dead letter's value is kept: enough for the batch's
// header fields (schema version, agent, labels, the first GPUs), which say where it came from.
const truncatedBytes = 16 << 10

// deadLetters is a cut's dead letters and which of them are written, so that a retry after a
// broker outage resumes where the last try stopped instead of writing them again.
type deadLetters struct {
	msgs   []kafka.Message
	done   []bool
	single bool // one was too large: write one at a time to find which
}

// writeDead writes the dead letters not yet written: all at once while that works, and one at a
// time once the broker (or the writer's BatchBytes) refused them as too large, truncating each one
// it refuses alone. A dead letter never blocks the commit of its partition for good.
func (in *Ingester) writeDead(ctx context.Context, d *deadLetters) error {
	var pending []int
	for i, ok := range d.done {
		if !ok {
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return nil
	}
	if !d.single {
		msgs := make([]kafka.Message, len(pending))
		for j, i := range pending {
			msgs[j] = d.msgs[i]
		}
		err := in.dlq.WriteMessages(ctx, msgs...)
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(pending) {
			for j, e := range werrs {
				if e == nil {
					d.done[pending[j]] = true
				}
			}
		} else if err == nil {
			for _, i := range pending {
				d.done[i] = true
			}
			return nil
		}
		if !tooLarge(err) {
			return fmt.Errorf("write %d dead letters: %w", len(pending), err)
		}
		d.single = true
		return in.writeDead(ctx, d)
	}
	for _, i := range pending {
		if err := in.writeOneDead(ctx, d.msgs[i]); err != nil {
			return err
		}
		d.done[i] = true
	}
	return nil
}

// writeOneDead writes one dead letter; refused as too large it writes it again truncated to
// truncatedBytes of its value, then to its headers alone. Should even those be refused (a
// dead-letter topic whose max.message.bytes is a few hundred bytes), it logs the dead letter's
// origin and reason and drops it, counted, rather than stall the partition.
func (in *Ingester) writeOneDead(ctx context.Context, m kafka.Message) error {
	err := in.dlq.WriteMessages(ctx, m)
	if err == nil || !tooLarge(err) {
		if err != nil {
			return fmt.Errorf("write dead letter: %w", err)
		}
		return nil
	}
	refused := err
	for _, keep := range []int{truncatedBytes, 0} {
		t := truncated(m, keep, refused)
		err = in.dlq.WriteMessages(ctx, t)
		if err == nil {
			in.nTruncated.Add(1)
			in.log.Warn("dead letter too large for the dead-letter topic; sent truncated",
				slog.String("dlq_topic", in.cfg.DLQTopic), slog.String("source", sourceOf(m)),
				slog.Int("bytes", len(m.Value)), slog.Int("kept", len(t.Value)), slog.Any("err", refused))
			return nil
		}
		if !tooLarge(err) {
			return fmt.Errorf("write truncated dead letter: %w", err)
		}
	}
	in.m.dlqLost.Inc()
	in.log.Error("dead letter refused by the dead-letter topic even truncated to its headers; dropped: raise its max.message.bytes",
		slog.String("dlq_topic", in.cfg.DLQTopic), slog.String("source", sourceOf(m)), slog.String("reason", header(m, "reason")),
		slog.Int("bytes", len(m.Value)), slog.Any("err", err))
	return nil
}

// truncated is m with its value cut to keep bytes (with keep 0, its key dropped too) and headers
// that say so: original_size, truncated_to and truncated_reason, next to the reason and origin.
func truncated(m kafka.Message, keep int, refused error) kafka.Message {
	t := kafka.Message{Key: m.Key, Value: m.Value[:min(keep, len(m.Value))]}
	if keep == 0 {
		t.Key = nil
	}
	t.Headers = append(append([]kafka.Header(nil), m.Headers...),
		kafka.Header{Key: "original_size", Value: []byte(strconv.Itoa(len(m.Value)))},
		kafka.Header{Key: "truncated_to", Value: []byte(strconv.Itoa(len(t.Value)))},
		kafka.Header{Key: "truncated_reason", Value: []byte("refused by the dead-letter topic: " + refused.Error())})
	return t
}

// tooLarge reports whether a write failed because a message or batch is over a size limit: the
// broker's max.message.bytes (MessageSizeTooLarge, RecordListTooLarge) or the writer's BatchBytes.
// kafka.WriteErrors does not unwrap, so its entries are looked at one by one.
func tooLarge(err error) bool {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if tooLarge(e) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
}

// header returns the value of m's header key, or "".
func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// sourceOf names a dead letter's source message as topic/partition@offset.
func sourceOf(m kafka.Message) string {
	return header(m, "source_topic") + "/" + header(m, "source_partition") + "@" + header(m, "source_offset")
}
