package agent

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/spool"
)

// ackedPrefix reads kafka-go's per-message outcome (kafka.WriteErrors, one entry per message
// sent, nil where the broker acknowledged it): the batches before the first one with a failed
// message count as delivered, so they are not sent again; the rest are, from their first batch.
func TestAckedPrefix(t *testing.T) {
	// Three batches: two messages, one, three (samples of two nodes, an events message, ...).
	bs := []spool.Batch{{Msgs: make([]spool.Message, 2)}, {Msgs: make([]spool.Message, 1)}, {Msgs: make([]spool.Message, 3)}}
	fail := io.ErrUnexpectedEOF
	cases := []struct {
		name     string
		err      error
		want     int
		tooLarge bool
	}{
		{"not per message", fmt.Errorf("produce 6 messages: %w", fail), 0, false},
		{"every message failed", kafka.WriteErrors{fail, fail, fail, fail, fail, fail}, 0, false},
		{"the first batch's second message failed", kafka.WriteErrors{nil, fail, nil, nil, nil, nil}, 0, false},
		{"the second batch failed", kafka.WriteErrors{nil, nil, fail, nil, nil, nil}, 1, false},
		{"only the last message failed", fmt.Errorf("produce: %w", kafka.WriteErrors{nil, nil, nil, nil, nil, fail}), 2, false},
		{"all acknowledged", kafka.WriteErrors{nil, nil, nil, nil, nil, nil}, 3, false},
		{"fewer outcomes than messages", kafka.WriteErrors{nil, nil, nil}, 2, false},
		{"too large, per message", kafka.WriteErrors{nil, nil, nil, kafka.MessageSizeTooLarge, kafka.MessageSizeTooLarge, nil}, 2, true},
		{"too large, whole", fmt.Errorf("produce: %w", kafka.MessageSizeTooLarge), 0, true},
		{"unrelated", errors.New("dial tcp: connection refused"), 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n, tooLarge := ackedPrefix(c.err, bs)
			if n != c.want || tooLarge != c.tooLarge {
				t.Errorf("ackedPrefix = %d, %v; want %d, %v", n, tooLarge, c.want, c.tooLarge)
			}
		})
	}
}
