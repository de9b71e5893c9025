package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/gpufleet/gpufleet/internal/kafka"
)

// runTopics is the admin step that creates the pipeline's topics; agents and ingest only check
// that they exist, so that they need no right to create topics.
func runTopics(ctx context.Context, e *env, args []string) error {
	f := newFlags(e, "topics", "Creates the pipeline's Kafka topics (gpu.samples, gpu.events, gpu.dlq) where missing, and sets\n"+
		"min.insync.replicas, max.message.bytes and retention.ms on existing ones where they differ.\n"+
		"Partitions and replication factor of an existing topic are reported, never changed. Safe to\n"+
		"run any number of times; prints one line per topic, created or found. Run it once, as a user\n"+
		"allowed to create topics, before agents and ingest start.")
	var k kafkaFlags
	var partitions, rf, minISR, maxBytes, dlqMaxBytes int
	var retention, dlqRetention time.Duration
	k.register(f)
	f.IntVar(&partitions, "partitions", 8, "partitions of gpu.samples and gpu.events: ingest workers share at most this many\n"+
		"(gpu.dlq has one); more later would move nodes to other partitions, so size it for growth")
	f.IntVar(&rf, "replication-factor", 0, "copies of each partition; 0 picks 3, or the number of brokers when fewer")
	f.IntVar(&minISR, "min-insync-replicas", 0, "copies that must take a write before the broker acks it (the agent waits for\n"+
		"acks=all); 0 picks 2 with 3 or more copies, else 1")
	f.IntVar(&maxBytes, "max-message-bytes", 0, "max.message.bytes of gpu.samples and gpu.events, the largest compressed batch the\n"+
		"broker takes; 0 keeps the broker's (1 MiB unless changed)")
	f.IntVar(&dlqMaxBytes, "dlq-max-message-bytes", kafka.DefaultDLQMaxMessageBytes, "max.message.bytes of gpu.dlq: a dead letter is a whole message plus\n"+
		"headers, so keep it at least --max-message-bytes")
	f.DurationVar(&retention, "retention", 7*24*time.Hour, "how long gpu.samples and gpu.events keep messages: an ingest outage longer than\n"+
		"this loses data; -1ns keeps them forever")
	f.DurationVar(&dlqRetention, "dlq-retention", 30*24*time.Hour, "how long gpu.dlq keeps dead letters; -1ns keeps them forever")
	if err := f.parse(args); err != nil {
		return err
	}
	switch {
	case partitions < 1:
		return usageError{fmt.Errorf("--partitions %d: must be at least 1", partitions)}
	case rf < 0:
		return usageError{fmt.Errorf("--replication-factor %d: must not be negative", rf)}
	case minISR < 0:
		return usageError{fmt.Errorf("--min-insync-replicas %d: must not be negative", minISR)}
	case rf > 0 && minISR > rf:
		return usageError{fmt.Errorf("--min-insync-replicas %d: above --replication-factor %d, no write could succeed", minISR, rf)}
	case maxBytes < 0:
		return usageError{fmt.Errorf("--max-message-bytes %d: must not be negative", maxBytes)}
	case dlqMaxBytes < 1:
		return usageError{fmt.Errorf("--dlq-max-message-bytes %d: must be at least 1", dlqMaxBytes)}
	case retention == 0 || (retention > 0 && retention < time.Minute):
		return usageError{fmt.Errorf("--retention %s: must be at least 1m (or negative: forever)", retention)}
	case dlqRetention == 0 || (dlqRetention > 0 && dlqRetention < time.Minute):
		return usageError{fmt.Errorf("--dlq-retention %s: must be at least 1m (or negative: forever)", dlqRetention)}
	}
	log, err := f.logger()
	if err != nil {
		return err
	}
	brokers, err := k.setup(log)
	if err != nil {
		return err
	}
	admin := kafka.NewAdmin(brokers, k.conn)
	if err := admin.WaitReachable(ctx, k.connectTimeout, log); err != nil {
		return k.explain(err)
	}
	k.connected(log, brokers)
	if rf == 0 {
		n, err := admin.Brokers(ctx)
		if err != nil {
			return k.explain(err)
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
	topics := kafka.PipelineTopics(partitions, dlqMaxBytes)
	for i := range topics {
		topics[i].ReplicationFactor, topics[i].MinInsyncReplicas, topics[i].Retention = rf, minISR, retention
		if topics[i].Name == kafka.DLQTopic {
			topics[i].Retention = dlqRetention
		} else {
			topics[i].MaxMessageBytes = maxBytes
		}
	}
	st, err := admin.EnsureTopics(ctx, topics)
	if err != nil {
		return k.explain(err)
	}
	for _, s := range st {
		fmt.Fprintln(e.stdout, s)
	}
	return nil
}
