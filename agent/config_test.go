package agent_test

import (
	"errors"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent"
	"github.com/gpufleet/gpufleet/agent/sim"
	"github.com/gpufleet/gpufleet/internal/config"
	"github.com/gpufleet/gpufleet/internal/kafka"
)

// New takes a zero as the default and refuses a value out of range with a FieldError naming the
// Config field (before: free text, "send-every" in the flag's spelling), the same check Validate
// makes for a caller that sets every field, as the CLI does.
func TestNewRefusesOutOfRange(t *testing.T) {
	prod := kafka.NewProducer([]string{"127.0.0.1:1"})
	defer prod.Close()
	base := agent.Config{Sources: []agent.Source{sim.NewNode(1, "c", 0, 1)}, Sender: prod}
	cases := []struct {
		field string
		set   func(*agent.Config)
	}{
		{"Interval", func(c *agent.Config) { c.Interval = 5 * time.Millisecond }},
		{"Interval", func(c *agent.Config) { c.Interval = -time.Second }},
		{"SendEvery", func(c *agent.Config) { c.SendEvery = 601 }},
		{"SendEvery", func(c *agent.Config) { c.SendEvery = -1 }},
		{"Speed", func(c *agent.Config) { c.Speed = 1001 }},
		{"Speed", func(c *agent.Config) { c.Speed = -2 }},
		{"Speed", func(c *agent.Config) { c.Interval, c.Speed = 10*time.Millisecond, 20 }}, // a tick under 1 ms
		{"MaxSendRecords", func(c *agent.Config) { c.MaxSendRecords = -1 }},
		{"MaxSendBytes", func(c *agent.Config) { c.MaxSendBytes = kafka.ProducerBatchBytes + 1 }},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			cfg := base
			c.set(&cfg)
			_, err := agent.New(cfg)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("New: %v; want a FieldError on %s", err, c.field)
			}
		})
	}
	if _, err := agent.New(base); err != nil {
		t.Errorf("New with every setting zero (the defaults): %v", err)
	}
	var fe *config.FieldError
	if err := (agent.Config{SendEvery: 1}).Validate(); !errors.As(err, &fe) || fe.Field != "Interval" || fe.Problem != "must be at least 10ms" {
		t.Errorf("Validate with a zero Interval: %v; want Interval: must be at least 10ms", err)
	}
}
