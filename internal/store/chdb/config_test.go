package chdb_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/internal/store/chdb"
	"github.com/gpufleet/gpufleet/internal/testenv"
)

// The engine reads its configuration from its data directory (created empty there), not from the
// working directory: before, a gpufleet started in a directory holding some ClickHouse
// configuration ran its embedded engine with it. A child process started in a directory whose
// config.xml names a cluster sees no such cluster, and one configured through its data directory
// does.
func TestEngineConfigFromDataDirectory(t *testing.T) {
	const cluster = `<clickhouse><remote_servers><%s><shard><replica><host>127.0.0.1</host><port>9000</port></replica></shard></%s></remote_servers></clickhouse>`
	if want := os.Getenv("GPUFLEET_TEST_CONFIG_CHILD"); want != "" {
		if want == "data" {
			testenv.EngineConfig(t, fmt.Sprintf(cluster, "from_data", "from_data"))
		}
		s := testenv.CHDB(t)
		r, err := s.Query(context.Background(), "SELECT groupArray(cluster) FROM (SELECT DISTINCT cluster FROM system.clusters WHERE cluster LIKE 'from_%' ORDER BY cluster)")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("clusters=%v\n", r.Rows[0][0])
		if _, err := os.Stat(filepath.Join(testenv.DataDir(t), chdb.ConfigFile)); err != nil {
			t.Errorf("no configuration in the data directory: %v", err)
		}
		return
	}
	for _, c := range []struct{ where, want string }{{"cwd", "clusters=[]"}, {"data", `clusters=["from_data"]`}} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.xml"), []byte(fmt.Sprintf(cluster, "from_cwd", "from_cwd")), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestEngineConfigFromDataDirectory$", "-test.count=1", "-test.v")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GPUFLEET_TEST_CONFIG_CHILD="+c.where, chdb.LibEnv+"="+testenv.LibCHDB(t))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestEngineConfigFromDataDirectory") || !strings.Contains(string(out), c.want) {
			t.Errorf("configured by %s: %v, want %s\n%s", c.where, err, c.want, out)
		}
	}
}
