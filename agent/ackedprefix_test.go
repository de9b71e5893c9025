package agent

import (
	"errors"
	"fmt"
	"io"
	"testing"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// ackedPrefix reads kafka-go's per-message outcome (kafkago.WriteErrors, one entry per message
// sent, nil where the broker acknowledged it): the batches before the first one with a failed
// message count as delivered, so they are not sent again; the rest are, from their first batch.
func TestAckedPrefix(t *testing.T) {
	// Three batches: two messages, one, three (samples of two nodes, an events message, ...).
	bs := []spool.Batch{{Msgs: make([]wire.Message, 2)}, {Msgs: make([]wire.Message, 1)}, {Msgs: make([]wire.Message, 3)}}
	fail := io.ErrUnexpectedEOF
	cases := []struct {
		name     string
		err      error
		want     int
		tooLarge bool
	}{
		{"not per message", fmt.Errorf("produce 6 messages: %w", fail), 0, false},
		{"every message failed", kafkago.WriteErrors{fail, fail, fail, fail, fail, fail}, 0, false},
		{"the first batch's second message failed", kafkago.WriteErrors{nil, fail, nil, nil, nil, nil}, 0, false},
		{"the second batch failed", kafkago.WriteErrors{nil, nil, fail, nil, nil, nil}, 1, false},
		{"only the last message failed", fmt.Errorf("produce: %w", kafkago.WriteErrors{nil, nil, nil, nil, nil, fail}), 2, false},
		{"all acknowledged", kafkago.WriteErrors{nil, nil, nil, nil, nil, nil}, 3, false},
		{"fewer outcomes than messages", kafkago.WriteErrors{nil, nil, nil}, 2, false},
		{"too large, per message", kafkago.WriteErrors{nil, nil, nil, kafkago.MessageSizeTooLarge, kafkago.MessageSizeTooLarge, nil}, 2, true},
		{"too large, whole", fmt.Errorf("produce: %w", kafkago.MessageSizeTooLarge), 0, true},
		{"unrelated", errors.New("dial tcp: connection refused"), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, tooLarge := ackedPrefix(kafka.NewProduceError(6, c.err), bs)
			if n != c.want || tooLarge != c.tooLarge {
				t.Errorf("ackedPrefix = %d, %v; want %d, %v", n, tooLarge, c.want, c.tooLarge)
			}
		})
	}
}
