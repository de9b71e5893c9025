// Package testenv starts the real services tests need: libchdb for the embedded ClickHouse engine
// and an Apache Kafka broker (KRaft), both installed by the project's deploy/dev scripts. Nothing
// here fakes a service; when one cannot be installed the test fails and says why.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/store/chdb"
	kafkago "github.com/segmentio/kafka-go"
)

// Test-binary-wide services, started on first use: chDB holds one data directory per process, and
// a broker takes seconds to start, so every test in a package shares them.
var (
	libOnce sync.Once
	libPath string
	libErr  error

	dirOnce sync.Once
	dataDir string

	kafkaMu      sync.Mutex
	kafkaBrokers []string
	kafkaDir     string
	kafkaLease   *portLease
)

// RepoRoot finds the module root by walking up to go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// LibCHDB returns the path of libchdb.so: $GPUFLEET_LIBCHDB, or installed by deploy/dev/chdb.sh.
func LibCHDB(t testing.TB) string {
	t.Helper()
	libOnce.Do(func() {
		if p := os.Getenv(chdb.LibEnv); p != "" {
			libPath = p
			return
		}
		root, err := RepoRoot()
		if err != nil {
			libErr = err
			return
		}
		out, err := exec.Command("bash", filepath.Join(root, "deploy/dev/chdb.sh"), "install").Output()
		if err != nil {
			libErr = fmt.Errorf("deploy/dev/chdb.sh install: %w", err)
			return
		}
		libPath = strings.TrimSpace(string(out))
	})
	if libErr != nil {
		t.Fatalf("libchdb: %v", libErr)
	}
	return libPath
}

// DataDir is the test binary's one chDB data directory.
func DataDir(t testing.TB) string {
	dirOnce.Do(func() {
		d, err := os.MkdirTemp("", "gpufleet-chdb-")
		if err != nil {
			panic(err)
		}
		dataDir = d
	})
	return dataDir
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_]`)

// Database returns a fresh database name for t.
func Database(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := unsafeChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	return "t_" + name + "_" + hex.EncodeToString(b[:])
}

// EngineConfig writes xml as the configuration of the test binary's chDB engine (chdb.ConfigFile
// in DataDir). The engine reads it when it starts, at the process's first open: a test that needs
// one (a cluster, a users file) runs in a child process that calls this before opening anything.
func EngineConfig(t testing.TB, xml string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(DataDir(t), chdb.ConfigFile), []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// configuredChild names, in a child process ConfiguredChild started, the test it runs.
const configuredChild = "GPUFLEET_TEST_CONFIGURED_CHILD"

// ConfiguredChild runs the calling test again in a child process whose chDB engine is configured
// with xml (EngineConfig: the engine reads its configuration once, when the process first opens
// it), and fails t unless the test passes there. It returns true in the child, where the test goes
// on, and false in the parent, which should return.
func ConfiguredChild(t *testing.T, xml string) bool {
	t.Helper()
	if os.Getenv(configuredChild) == t.Name() {
		EngineConfig(t, xml)
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), configuredChild+"="+t.Name(), chdb.LibEnv+"="+LibCHDB(t))
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("child test: %v\n%s", err, out)
	}
	return false
}

// CHDBPair opens, beside a fresh database (CHDB), another named after it with suffix, also
// dropped when t ends: a read database and its shard database, say.
func CHDBPair(t testing.TB, suffix string) (*chdb.Store, *chdb.Store) {
	t.Helper()
	first := CHDB(t)
	second, err := chdb.Open(DataDir(t), first.Database()+suffix, LibCHDB(t))
	if err != nil {
		t.Fatalf("open chdb: %v", err)
	}
	t.Cleanup(func() {
		_ = second.Exec(context.Background(), "DROP DATABASE IF EXISTS "+second.Database())
		second.Close()
	})
	return first, second
}

// CHDB opens the embedded engine on a fresh database that is dropped when t ends.
func CHDB(t testing.TB) *chdb.Store {
	t.Helper()
	s, err := chdb.Open(DataDir(t), Database(t), LibCHDB(t))
	if err != nil {
		t.Fatalf("open chdb: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Exec(context.Background(), "DROP DATABASE IF EXISTS "+s.Database())
		s.Close()
	})
	return s
}

// Kafka returns the address of a real broker: $GPUFLEET_TEST_BROKERS, or one started with
// deploy/dev/kafka.sh for this test binary (stopped by Main).
func Kafka(t testing.TB) []string {
	t.Helper()
	if b := os.Getenv("GPUFLEET_TEST_BROKERS"); b != "" {
		return strings.Split(b, ",")
	}
	kafkaMu.Lock()
	defer kafkaMu.Unlock()
	if kafkaBrokers != nil {
		return kafkaBrokers
	}
	dir, err := os.MkdirTemp("", "gpufleet-kafka-")
	if err != nil {
		t.Fatal(err)
	}
	kafkaDir = dir
	addr, lease := startBroker(t, dir)
	kafkaBrokers, kafkaLease = []string{addr}, lease
	return kafkaBrokers
}

// StopKafka stops the broker Kafka started, if any.
func StopKafka() {
	kafkaMu.Lock()
	defer kafkaMu.Unlock()
	if kafkaDir == "" {
		return
	}
	_ = kafkaScript("stop", kafkaDir).Run()
	kafkaLease.release()
	os.RemoveAll(kafkaDir)
	kafkaDir, kafkaBrokers = "", nil
}

// Main runs a package's tests and then stops the services they started. Use it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	StopKafka()
	if dataDir != "" {
		os.RemoveAll(dataDir)
	}
	return code
}

// Broker is a Kafka broker of one test's own, which the test may stop and resume (outages).
type Broker struct {
	Addr string
	dir  string
}

// NewKafka starts a private broker with deploy/dev/kafka.sh, stopped when the test ends.
func NewKafka(t testing.TB) *Broker {
	t.Helper()
	b := &Broker{dir: t.TempDir()}
	addr, lease := startBroker(t, b.dir)
	b.Addr = addr
	t.Cleanup(func() {
		_ = kafkaScript("stop", b.dir).Run()
		lease.release()
	})
	return b
}

// kafkaScript is deploy/dev/kafka.sh with args.
func kafkaScript(args ...string) *exec.Cmd {
	root, err := RepoRoot()
	if err != nil {
		root = "."
	}
	return exec.Command("bash", append([]string{filepath.Join(root, "deploy/dev/kafka.sh")}, args...)...)
}

// startBroker starts a broker in dir on free ports and returns its address and the ports' lease.
func startBroker(t testing.TB, dir string) (string, *portLease) {
	t.Helper()
	return startOnFreePorts(t, "kafka broker", 2, func(port int) (string, error) {
		return runScript(kafkaScript("start", dir, strconv.Itoa(port)), filepath.Join(dir, "broker.log"), filepath.Join(dir, "format.log"))
	}, func() { _ = kafkaScript("stop", dir).Run() })
}

// Stop stops the broker, keeping its data.
func (b *Broker) Stop(t testing.TB) { b.script(t, "stop") }

// Resume starts the stopped broker again with its data. A start that fails is tried once more (a
// broker killed after a stop timed out may still hold its port or lock for a moment); the second
// failure fails t with the end of the broker's log, as the test's temporary directory goes with it.
func (b *Broker) Resume(t testing.TB) {
	t.Helper()
	if err := kafkaScript("resume", b.dir).Run(); err != nil {
		time.Sleep(2 * time.Second)
		b.script(t, "resume")
	}
	// A restarted broker listens before it leads its partitions again; until then every produce is
	// refused with "no leader". A broker resumed means one that serves, so wait for that here.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := waitLeaders(ctx, b.Addr); err != nil {
		t.Fatalf("kafka broker %s resumed but does not lead its partitions: %v; end of %s/broker.log:\n%s",
			b.Addr, err, b.dir, logTail(filepath.Join(b.dir, "broker.log"), 40))
	}
}

// waitLeaders polls the broker's metadata until every partition of every topic has a leader, or
// ctx ends.
func waitLeaders(ctx context.Context, addr string) error {
	c := &kafkago.Client{Addr: kafkago.TCP(addr), Timeout: 5 * time.Second}
	for {
		md, err := c.Metadata(ctx, &kafkago.MetadataRequest{})
		if err == nil {
			err = leaderless(md)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func leaderless(md *kafkago.MetadataResponse) error {
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return fmt.Errorf("topic %s: %w", tp.Name, tp.Error)
		}
		for _, p := range tp.Partitions {
			if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
				return fmt.Errorf("%s/%d has no leader (%v)", tp.Name, p.ID, p.Error)
			}
		}
	}
	return nil
}

func (b *Broker) script(t testing.TB, verb string) {
	t.Helper()
	cmd := kafkaScript(verb, b.dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kafka.sh %s: %v; end of %s/broker.log:\n%s", verb, err, b.dir, logTail(filepath.Join(b.dir, "broker.log"), 40))
	}
}

// logTail returns the last n lines of the file at path, or why it cannot.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
