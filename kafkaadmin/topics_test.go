package kafkaadmin_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/kafkaadmin"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// The dead-letter topic the set-up creates takes dead letters of several MB: a whole source
// message plus headers, which the broker's default max.message.bytes (1 MiB) refuses.
func TestEnsureTopicsMaxMessageBytes(t *testing.T) {
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := testenv.Database(t)
	defaults := kafkaadmin.PipelineTopics(2, 0)
	tests := []struct {
		name string
		in   kafkaadmin.Topic
		want int
	}{
		{name: "pipeline dlq", in: defaults[2], want: kafkaadmin.DefaultDLQMaxMessageBytes},
		{name: "configured", in: kafkaadmin.PipelineTopics(2, 3<<20)[2], want: 3 << 20},
		{name: "broker default", in: defaults[0], want: 1048588},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Name = testenv.Database(t) + "." + tt.in.Name
			if err := kafkaadmin.EnsureTopics(ctx, brokers, []kafkaadmin.Topic{tt.in}); err != nil {
				t.Fatal(err)
			}
			got, err := kafkaadmin.MaxMessageBytes(ctx, brokers, tt.in.Name)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("%s: max.message.bytes %d, want %d", tt.in.Name, got, tt.want)
			}
		})
	}
	if err := kafkaadmin.EnsureTopics(ctx, brokers, []kafkaadmin.Topic{{Name: prefix + ".neg", Partitions: 1, MaxMessageBytes: -1}}); err == nil {
		t.Error("a negative MaxMessageBytes was accepted")
	}
}
