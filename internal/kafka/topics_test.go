package kafka_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// The dead-letter topic the set-up creates takes dead letters of several MB: a whole source
// message plus headers, which the broker's default max.message.bytes (1 MiB) refuses.
func TestEnsureTopicsMaxMessageBytes(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := testenv.Database(t)
	defaults := kafka.PipelineTopics(2, 0)
	tests := []struct {
		name string
		in   kafka.Topic
		want int
	}{
		{name: "pipeline dlq", in: defaults[2], want: kafka.DefaultDLQMaxMessageBytes},
		{name: "configured", in: kafka.PipelineTopics(2, 3<<20)[2], want: 3 << 20},
		{name: "broker default", in: defaults[0], want: 1048588},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Name = testenv.Database(t) + "." + tt.in.Name
			if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{tt.in}); err != nil {
				t.Fatal(err)
			}
			got, err := kafka.MaxMessageBytes(ctx, brokers, tt.in.Name)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%s: max.message.bytes %d, want %d", tt.in.Name, got, tt.want)
			}
		})
	}
	if err := kafka.EnsureTopics(ctx, brokers, []kafka.Topic{{Name: prefix + ".neg", Partitions: 1, MaxMessageBytes: -1}}); err == nil {
		t.Error("a negative MaxMessageBytes was accepted")
	}
}

// The topic set-up is idempotent: a second run creates nothing and changes nothing; on a topic
// made with other settings it sets the configs it manages and reports, without touching, the
// partitions. Before, topics were created by every agent with replication factor 1 and no configs.
func TestEnsureTopicsIdempotent(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := kafka.NewAdmin(brokers, nil)
	name := testenv.Database(t) + ".samples"
	want := kafka.Topic{Name: name, Partitions: 3, ReplicationFactor: 1, MinInsyncReplicas: 1, MaxMessageBytes: 2 << 20,
		Retention: 36 * time.Hour}
	if err := admin.CheckTopics(ctx, name); !errors.As(err, new(*kafka.MissingTopicsError)) {
		t.Fatalf("CheckTopics before the set-up: %v, want a MissingTopicsError", err)
	}
	// CheckTopics must not create it, even on a broker with auto.create.topics.enable.
	if err := admin.CheckTopics(ctx, name); !errors.As(err, new(*kafka.MissingTopicsError)) {
		t.Fatalf("CheckTopics created the topic: %v", err)
	}
	wantConfigs := map[string]string{"min.insync.replicas": "1", "max.message.bytes": "2097152", "retention.ms": "129600000"}
	for i, created := range []bool{true, false} {
		st, err := admin.EnsureTopics(ctx, []kafka.Topic{want})
		if err != nil {
			t.Fatal(err)
		}
		s := st[0]
		if s.Created != created || s.Partitions != 3 || s.ReplicationFactor != 1 || len(s.Updated) != 0 || len(s.Differs) != 0 ||
			!maps.Equal(s.Configs, wantConfigs) {
			t.Errorf("run %d: %+v, want created=%v, 3 partitions, RF 1, %v, nothing updated", i+1, s, created, wantConfigs)
		}
		if !strings.Contains(s.String(), map[bool]string{true: ": created, 3 partitions", false: ": exists, 3 partitions"}[created]) {
			t.Errorf("run %d: %q", i+1, s)
		}
	}
	if err := admin.CheckTopics(ctx, name); err != nil {
		t.Errorf("CheckTopics after the set-up: %v", err)
	}

	changed := want
	changed.Partitions, changed.MaxMessageBytes, changed.Retention = 6, 4<<20, -1
	st, err := admin.EnsureTopics(ctx, []kafka.Topic{changed})
	if err != nil {
		t.Fatal(err)
	}
	s := st[0]
	wantUpdated := []string{"max.message.bytes 2097152 → 4194304", "retention.ms 129600000 → -1"}
	if s.Created || !slices.Equal(s.Updated, wantUpdated) || !slices.Equal(s.Differs, []string{"partitions 6 (has 3)"}) ||
		s.Configs["max.message.bytes"] != "4194304" || s.Configs["retention.ms"] != "-1" {
		t.Errorf("changed settings: %+v\nwant updated %q and partitions reported", s, wantUpdated)
	}
	if got, err := admin.MaxMessageBytes(ctx, name); err != nil || got != 4<<20 {
		t.Errorf("max.message.bytes on the broker: %d, %v", got, err)
	}

	bad := []struct {
		t    kafka.Topic
		want string
	}{
		{kafka.Topic{Name: name + ".x", Partitions: 1, ReplicationFactor: 1, MinInsyncReplicas: 2}, "MinInsyncReplicas 2 is above ReplicationFactor 1"},
		{kafka.Topic{Name: name + ".x", Partitions: 0}, "Partitions 0 must be at least 1"},
		{kafka.Topic{Name: name + ".x", Partitions: 1, ReplicationFactor: 3}, "replication factor 3 but the cluster has 1 brokers"},
	}
	for _, b := range bad {
		if _, err := admin.EnsureTopics(ctx, []kafka.Topic{b.t}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("EnsureTopics(%+v) = %v, want %q", b.t, err, b.want)
		}
	}
}
