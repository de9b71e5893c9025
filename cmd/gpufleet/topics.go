package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// topicsCmd is `gpufleet topics`, the admin step that creates the pipeline's topics; agents and
// ingest only check that they exist, so that they need no right to create topics.
type topicsCmd struct {
	k                       kafkaFlags
	partitions, rf, minISR  int
	maxBytes, dlqMaxBytes   int
	retention, dlqRetention time.Duration
}

func runTopics(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "topics", "Creates the pipeline's Kafka topics (gpu.samples, gpu.events, gpu.dlq) where missing, and sets\n"+
		"min.insync.replicas, max.message.bytes and retention.ms on existing ones where they differ.\n"+
		"Partitions and replication factor of an existing topic are reported, never changed. Safe to\n"+
		"run any number of times; prints one line per topic, created or found. Run it once, as a user\n"+
		"allowed to create topics, before agents and ingest start.")
	var c topicsCmd
	c.register(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := c.validate(); err != nil {
		return err
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	return c.run(ctx, e, log)
}

func (c *topicsCmd) register(f *flags) {
	c.k.register(f)
	f.IntVar(&c.partitions, "partitions", 8, "partitions of gpu.samples and gpu.events: ingest workers share at most this many\n"+
		"(gpu.dlq has one); more later would move nodes to other partitions, so size it for growth")
	f.IntVar(&c.rf, "replication-factor", 0, "copies of each partition; 0 picks 3, or the number of brokers when fewer")
	f.IntVar(&c.minISR, "min-insync-replicas", 0, "copies that must take a write before the broker acks it (the agent waits for\n"+
		"acks=all); 0 picks 2 with 3 or more copies, else 1")
	f.IntVar(&c.maxBytes, "max-message-bytes", 0, "max.message.bytes of gpu.samples and gpu.events, the largest compressed batch the\n"+
		"broker takes; 0 keeps the broker's (1 MiB unless changed)")
	f.IntVar(&c.dlqMaxBytes, "dlq-max-message-bytes", kafka.DefaultDLQMaxMessageBytes, "max.message.bytes of gpu.dlq: a dead letter is a whole message plus\n"+
		"headers, so keep it at least --max-message-bytes")
	f.DurationVar(&c.retention, "retention", 7*24*time.Hour, "how long gpu.samples and gpu.events keep messages: an ingest outage longer than\n"+
		"this loses data; -1ns keeps them forever")
	f.DurationVar(&c.dlqRetention, "dlq-retention", 30*24*time.Hour, "how long gpu.dlq keeps dead letters; -1ns keeps them forever")
}

func (c *topicsCmd) validate() error {
	switch {
	case c.partitions < 1:
		return usageError{fmt.Errorf("--partitions %d: must be at least 1", c.partitions)}
	case c.rf < 0:
		return usageError{fmt.Errorf("--replication-factor %d: must not be negative", c.rf)}
	case c.minISR < 0:
		return usageError{fmt.Errorf("--min-insync-replicas %d: must not be negative", c.minISR)}
	case c.rf > 0 && c.minISR > c.rf:
		return usageError{fmt.Errorf("--min-insync-replicas %d: above --replication-factor %d, no write could succeed", c.minISR, c.rf)}
	case c.maxBytes < 0:
		return usageError{fmt.Errorf("--max-message-bytes %d: must not be negative", c.maxBytes)}
	case c.dlqMaxBytes < 1:
		return usageError{fmt.Errorf("--dlq-max-message-bytes %d: must be at least 1", c.dlqMaxBytes)}
	case c.retention == 0 || (c.retention > 0 && c.retention < time.Minute):
		return usageError{fmt.Errorf("--retention %s: must be at least 1m (or negative: forever)", c.retention)}
	case c.dlqRetention == 0 || (c.dlqRetention > 0 && c.dlqRetention < time.Minute):
		return usageError{fmt.Errorf("--dlq-retention %s: must be at least 1m (or negative: forever)", c.dlqRetention)}
	}
	return nil
}

func (c *topicsCmd) run(ctx context.Context, e *env, log *slog.Logger) error {
	brokers, err := c.k.setup(log)
	if err != nil {
		return err
	}
	admin := kafka.NewAdmin(brokers, c.k.conn)
	if err := admin.WaitReachable(ctx, c.k.connectTimeout, log); err != nil {
		return c.k.explain(err)
	}
	c.k.connected(log, brokers)
	rf, minISR := c.rf, c.minISR
	if rf == 0 {
		n, err := admin.Brokers(ctx)
		if err != nil {
			return c.k.explain(err)
		}
		rf = min(3, max(1, n))
		if rf < 3 {
			log.Warn("fewer than 3 brokers: each partition has fewer than 3 copies, and losing a broker can lose acknowledged data",
				slog.Int("brokers", n), slog.Int("replication_factor", rf))
		}
	}
	if minISR == 0 {
		minISR = min(2, max(1, rf-1))
	}
	topics := kafka.PipelineTopics(c.partitions, c.dlqMaxBytes)
	for i := range topics {
		topics[i].ReplicationFactor, topics[i].MinInsyncReplicas, topics[i].Retention = rf, minISR, c.retention
		if topics[i].Name == wire.DLQTopic {
			topics[i].Retention = c.dlqRetention
		} else {
			topics[i].MaxMessageBytes = c.maxBytes
		}
	}
	st, err := admin.EnsureTopics(ctx, topics)
	if err != nil {
		return c.k.explain(err)
	}
	for _, s := range st {
		fmt.Fprintln(e.stdout, s)
	}
	return nil
}
