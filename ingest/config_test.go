package ingest

import (
	"errors"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/config"
	"github.com/gpufleet/gpufleet/internal/store"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// New takes a zero as the default but refuses a value out of range, naming the field: before, a
// negative BatchRows, BatchAge, DLQMaxBytes, ... was silently replaced by the default, so that the
// CLI's check and the package's disagreed on what is valid.
func TestNewRefusesOutOfRange(t *testing.T) {
	st := testenv.CHDB(t)
	base := Config{Brokers: []string{"127.0.0.1:1"}, Store: st}
	cases := []struct {
		field string
		set   func(*Config)
	}{
		{"BatchRows", func(c *Config) { c.BatchRows = -1 }},
		{"BatchBytes", func(c *Config) { c.BatchBytes = -1 }},
		{"BatchAge", func(c *Config) { c.BatchAge = -time.Second }},
		{"QueueMessages", func(c *Config) { c.QueueMessages = -1 }},
		{"MaxMessageBytes", func(c *Config) { c.MaxMessageBytes = -1 }},
		{"SessionTimeout", func(c *Config) { c.SessionTimeout = 10 * time.Millisecond }},
		{"DLQMaxBytes", func(c *Config) { c.DLQMaxBytes = 2 << 30 }},
		{"MaxClockAhead", func(c *Config) { c.MaxClockAhead = time.Millisecond }},
		{"ClockSkewTolerance", func(c *Config) { c.ClockSkewTolerance = -time.Second }},
		{"ClockSkewTolerance", func(c *Config) { c.MaxClockAhead, c.ClockSkewTolerance = time.Minute, time.Hour }},
		{"SkewLogInterval", func(c *Config) { c.SkewLogInterval = -time.Second }},
		{"AgentStateMax", func(c *Config) { c.AgentStateMax = -1 }},
		{"AgentStateIdle", func(c *Config) { c.AgentStateIdle = time.Millisecond }},
		{"Shards", func(c *Config) { c.Shards = []store.Store{st, st} }},
		{"Shards[1]", func(c *Config) { c.Store, c.Shards = nil, []store.Store{st, nil} }},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			cfg := base
			c.set(&cfg)
			_, err := New(cfg)
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Fatalf("New: %v; want a FieldError on %s", err, c.field)
			}
		})
	}
	in, err := New(base)
	if err != nil {
		t.Fatalf("New with every setting zero (the defaults): %v", err)
	}
	if in.cfg.BatchRows != 100_000 || in.cfg.DLQMaxBytes != 64<<20 || in.cfg.SessionTimeout != 10*time.Second {
		t.Errorf("defaults: BatchRows %d, DLQMaxBytes %d, SessionTimeout %s", in.cfg.BatchRows, in.cfg.DLQMaxBytes, in.cfg.SessionTimeout)
	}
	// Validate checks the settings as they stand: a caller that sets every field (the CLI) has
	// no zero taken as a default behind its back.
	var fe *config.FieldError
	if err := (Config{}).Validate(); !errors.As(err, &fe) || fe.Field != "BatchRows" {
		t.Errorf("Validate of a zero Config: %v; want a FieldError on BatchRows", err)
	}
}
