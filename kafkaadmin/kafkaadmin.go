// Package kafkaadmin holds the broker chores agents, ingest and demo share: waiting for a broker
// to answer and creating the topics the pipeline uses.
package kafkaadmin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Default topic names (see DESIGN.md).
const (
	SamplesTopic = "gpu.samples"
	EventsTopic  = "gpu.events"
	DLQTopic     = "gpu.dlq"
)

// DefaultDLQMaxMessageBytes is the max.message.bytes PipelineTopics gives the dead-letter topic: a
// dead letter is a whole source message plus headers, and agents legitimately send messages of
// several MB (16 GPUs, long labels, --send-every 600), which the broker's default of 1 MiB refuses.
// It bounds the compressed record batch, so 16 MiB holds messages far larger uncompressed.
const DefaultDLQMaxMessageBytes = 16 << 20

// Topic is a topic to create if missing.
type Topic struct {
	Name       string
	Partitions int
	// MaxMessageBytes sets the topic's max.message.bytes, the largest (compressed) record batch the
	// broker accepts on it; 0 leaves the broker's message.max.bytes (1 MiB unless changed).
	MaxMessageBytes int
}

// PipelineTopics are the pipeline's topics under their default names: samples and events with
// partitions partitions, and the one-partition dead-letter topic with dlqMaxMessageBytes (0 means
// DefaultDLQMaxMessageBytes).
func PipelineTopics(partitions, dlqMaxMessageBytes int) []Topic {
	if dlqMaxMessageBytes <= 0 {
		dlqMaxMessageBytes = DefaultDLQMaxMessageBytes
	}
	return []Topic{{Name: SamplesTopic, Partitions: partitions}, {Name: EventsTopic, Partitions: partitions},
		{Name: DLQTopic, Partitions: 1, MaxMessageBytes: dlqMaxMessageBytes}}
}

// WaitReachable dials the brokers until one answers a metadata request, backing off up to 2 s
// between tries, and gives up after timeout with an error that says what to check.
func WaitReachable(ctx context.Context, brokers []string, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	backoff := 100 * time.Millisecond
	var last error
	for attempt := 1; ; attempt++ {
		for _, b := range brokers {
			c, err := kafka.DialContext(ctx, "tcp", b)
			if err == nil {
				_, err = c.Brokers()
				c.Close()
				if err == nil {
					return nil
				}
			}
			last = err
		}
		if log != nil && attempt%5 == 0 {
			log.Warn("kafka not reachable yet, retrying", slog.String("brokers", strings.Join(brokers, ",")), slog.Any("err", last))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cannot reach Kafka at %s after %s (%v): check --brokers and that the broker is running",
				strings.Join(brokers, ","), timeout, last)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// EnsureTopics creates the topics that do not exist yet; existing ones are left as they are.
func EnsureTopics(ctx context.Context, brokers []string, topics []Topic) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, t := range topics {
		tc := kafka.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: 1}
		if t.MaxMessageBytes < 0 {
			return fmt.Errorf("create topic %s: MaxMessageBytes %d is negative", t.Name, t.MaxMessageBytes)
		}
		if t.MaxMessageBytes > 0 {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: "max.message.bytes",
				ConfigValue: strconv.Itoa(t.MaxMessageBytes)})
		}
		req.Topics = append(req.Topics, tc)
	}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, err := range res.Errors {
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	// Metadata reaches every listener shortly after creation; wait so the first produce does not fail.
	for _, t := range topics {
		if err := waitTopic(ctx, client, t.Name); err != nil {
			return err
		}
	}
	return nil
}

func waitTopic(ctx context.Context, client *kafka.Client, topic string) error {
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) > 0 {
			ready := true
			for _, p := range md.Topics[0].Partitions {
				if p.Leader.ID < 0 || p.Error != nil {
					ready = false
				}
			}
			if ready {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s not ready: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ParseBrokers splits a comma-separated broker list and checks each is host:port.
func ParseBrokers(s string) ([]string, error) {
	var out []string
	for _, b := range strings.Split(s, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			return nil, fmt.Errorf("broker %q is not host:port", b)
		}
		if p, err := strconv.Atoi(port); host == "" || err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("broker %q is not host:port (a host name and a port 1-65535)", b)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no broker given")
	}
	return out, nil
}

// MaxMessageBytes returns a topic's effective max.message.bytes (its own setting or the broker's
// default), so that a writer can tell in advance what the broker will refuse.
func MaxMessageBytes(ctx context.Context, brokers []string, topic string) (int, error) {
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{"max.message.bytes"}}}})
	if err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	for _, r := range res.Resources {
		if r.Error != nil {
			return 0, fmt.Errorf("describe topic %s: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == "max.message.bytes" {
				n, err := strconv.Atoi(e.ConfigValue)
				if err != nil {
					return 0, fmt.Errorf("describe topic %s: max.message.bytes %q: %w", topic, e.ConfigValue, err)
				}
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("describe topic %s: no max.message.bytes in the answer", topic)
}
