package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
)

// Cluster is three real Kafka brokers (KRaft, each also a controller) of one test's own, on
// loopback, from deploy/dev/kafka.sh start-cluster: internal topics with three replicas and
// min.insync.replicas 2. Stopped when the test ends.
type Cluster struct {
	Addrs []string // node i+1 listens on Addrs[i]
	dir   string
}

// NewKafkaCluster starts a three-broker cluster.
func NewKafkaCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{dir: t.TempDir()}
	stopAll := func() {
		for i := range 3 {
			_ = kafkaScript("stop", c.node(i)).Run()
		}
	}
	logs := []string{c.node(0) + "/broker.log", c.node(1) + "/broker.log", c.node(2) + "/broker.log"}
	out, lease := startOnFreePorts(t, "kafka cluster", 6, func(port int) (string, error) {
		return runScript(kafkaScript("start-cluster", c.dir, strconv.Itoa(port)), logs...)
	}, stopAll)
	c.Addrs = strings.Split(out, ",")
	t.Cleanup(func() {
		stopAll()
		lease.release()
	})
	return c
}

func (c *Cluster) node(i int) string { return filepath.Join(c.dir, fmt.Sprintf("n%d", i+1)) }

// Kill9 kills the broker at Addrs[i] as a crash would: no shutdown, no leadership handover.
func (c *Cluster) Kill9(t testing.TB, i int) {
	t.Helper()
	if err := kafkaScript("kill9", c.node(i)).Run(); err != nil {
		t.Fatalf("kill -9 node %d: %v", i+1, err)
	}
}

// Resume starts the killed broker at Addrs[i] again with its data.
func (c *Cluster) Resume(t testing.TB, i int) {
	t.Helper()
	cmd := kafkaScript("resume", c.node(i))
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("resume node %d: %v (log: %s/broker.log)", i+1, err, c.node(i))
	}
}

// StopAll stops every broker at once (one at a time, the last would wait for a controller quorum
// that is already gone).
func (c *Cluster) StopAll(t testing.TB) {
	t.Helper()
	c.each(t, "stop")
}

// ResumeAll starts every stopped broker again at once: after the whole cluster stopped, a node's
// client listener opens only once a quorum of controllers is back, so one at a time would wait
// forever for the second.
func (c *Cluster) ResumeAll(t testing.TB) {
	t.Helper()
	c.each(t, "resume")
}

// each runs kafka.sh verb on every node at once.
func (c *Cluster) each(t testing.TB, verb string) {
	t.Helper()
	errs := make(chan error, len(c.Addrs))
	for i := range c.Addrs {
		go func() {
			cmd := kafkaScript(verb, c.node(i))
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				errs <- fmt.Errorf("%s node %d: %w (log: %s/broker.log)", verb, i+1, err, c.node(i))
				return
			}
			errs <- nil
		}()
	}
	for range c.Addrs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// LeaderOf returns the index in Addrs of the broker leading topic's partition.
func (c *Cluster) LeaderOf(t testing.TB, topic string, partition int) int {
	t.Helper()
	conn, err := kafka.Dial("tcp", c.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if p.ID != partition {
			continue
		}
		for i, a := range c.Addrs {
			if a == p.Leader.Host+":"+strconv.Itoa(p.Leader.Port) {
				return i
			}
		}
	}
	t.Fatalf("no leader among %v for %s/%d", c.Addrs, topic, partition)
	return -1
}
