package main_test

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// The agent's flags: NVML unless told otherwise (the simulator is for fake fleets), and spool
// flags that contradict each other refused before anything is opened.
func TestAgentFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		// Before, the default source was the simulator: this streamed fake GPUs as node-00000.
		{"NVML by default", []string{"agent", "--brokers", "127.0.0.1:1", "--connect-timeout", "1s", "--state-dir", t.TempDir()}, 1, "libnvidia-ml.so.1) was not found"},
		{"no-spool with spool-dir", []string{"agent", "--no-spool", "--spool-dir", t.TempDir()}, 2, "--no-spool and --spool-dir"},
		{"zero spool cap", []string{"agent", "--source", "sim", "--spool-mib", "0", "--state-dir", t.TempDir()}, 2, "--spool-mib 0: must be at least 1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, nil, c.args...)
			if r.code != c.code || !bytes.Contains([]byte(r.stderr), []byte(c.want)) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, c.code, c.want)
			}
		})
	}
}

// lockedBuffer is a child's stderr, read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var stoppedLine = regexp.MustCompile(`msg=stopped samples=(\d+)`)

func samplesTaken(t *testing.T, stderr string) uint64 {
	t.Helper()
	m := stoppedLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no stopped line in the agent's log:\n%s", stderr)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// SIGTERM with Kafka down: the agent exits at once with status 0, everything it sampled safe in
// its spool (the default state directory's form, <state-dir>/spool), and the next run, with Kafka
// back, delivers it: every sample of both runs is in Kafka, each node's sequence unbroken. Before,
// the agent took 60 s to exit, with status 1.
func TestAgentSIGTERMWithKafkaDown(t *testing.T) {
	broker := testenv.NewKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, []string{broker.Addr}, []kafka.Topic{{Name: wire.SamplesTopic, Partitions: 1},
		{Name: wire.EventsTopic, Partitions: 1}, {Name: wire.DLQTopic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	broker.Stop(t)
	state := t.TempDir()
	args := []string{"agent", "--source", "sim", "--gpus", "16", "--interval", "50ms", "--state-dir", state,
		"--brokers", broker.Addr, "--metrics-addr", ""}

	cmd := exec.Command(binary, args...)
	cmd.Env = cleanEnv()
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // about 60 cycles, every send refused
	sent := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	took := time.Since(sent)
	if err != nil || took > 20*time.Second {
		t.Fatalf("after SIGTERM with Kafka down: %v in %s; want exit 0 within seconds\n%s", err, took, stderr.String())
	}
	first := samplesTaken(t, stderr.String())
	sp, err := spool.Open(filepath.Join(state, "spool"), spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	held := sp.Stats()
	sp.Close()
	if held.Batches == 0 || held.Batches*16 != first {
		t.Fatalf("spool holds %+v after a run that took %d samples (16 a batch)", held, first)
	}

	broker.Resume(t)
	r := run(t, nil, append(args, "--for", "3s")...)
	if r.code != 0 {
		t.Fatalf("second run: exit %d\n%s", r.code, r.stderr)
	}
	second := samplesTaken(t, r.stderr)

	rd := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{broker.Addr}, Topic: wire.SamplesTopic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer rd.Close()
	var dec wire.SampleDecoder
	seq := map[string]uint64{}
	var rows uint64
	for rows < first+second {
		m, err := rd.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("Kafka holds %d of the %d+%d samples taken: %v", rows, first, second, err)
		}
		b, err := dec.Decode(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case b.Seq == seq[b.Node]+1:
			seq[b.Node] = b.Seq
			rows += uint64(len(b.TimeUnixMs))
		case b.Seq > seq[b.Node]+1:
			t.Fatalf("%s: seq %d after %d: batches lost", b.Node, b.Seq, seq[b.Node])
		}
	}
	t.Logf("SIGTERM to exit 0 in %s with Kafka down; %d samples spooled (%d batches), delivered with the next run's %d", took.Round(time.Millisecond), first, held.Batches, second)
}
