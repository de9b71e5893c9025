package main_test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// simulate --dcgm-compat (or GPUFLEET_DCGM_COMPAT) serves every simulated GPU's reading on /metrics
// under dcgm-exporter's names and labels, from the samples it streams to a real broker; without it,
// /metrics has no DCGM_ names. Before, the flag did not exist.
func TestSimulateDCGMCompat(t *testing.T) {
	addrs := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, addrs, []kafka.Topic{{Name: wire.SamplesTopic, Partitions: 1},
		{Name: wire.EventsTopic, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(addrs, ",")
	cases := []struct {
		name string
		env  []string
		args []string
		want bool
	}{
		{"flag", nil, []string{"--dcgm-compat"}, true},
		{"env", []string{"GPUFLEET_DCGM_COMPAT=true"}, nil, true},
		{"off", nil, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"simulate", "--brokers", brokers, "--gpus", "4", "--gpus-per-node", "2",
				"--interval", "100ms", "--metrics-addr", "127.0.0.1:0"}, c.args...)
			d := startDaemon(t, c.env, regexp.MustCompile(`msg="serving metrics"`), args...)
			addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(d.first)
			if addr == nil {
				t.Fatalf("no metrics address in %q", d.first)
			}
			var body string
			// Two cycles sampled: the readings of the first are being served.
			for guard := time.Now().Add(2 * time.Minute); ; { // a guard against a hang, not a timed assertion
				body = getBody(t, "http://"+addr[1]+"/metrics")
				if m := regexp.MustCompile(`(?m)^gpufleet_agent_samples_total (\d+)$`).FindStringSubmatch(body); m != nil {
					if n, _ := strconv.Atoi(m[1]); n > 4 {
						break
					}
				}
				if time.Now().After(guard) {
					t.Fatalf("simulate took no samples:\n%s\n%s", body, d.stderr())
				}
				time.Sleep(100 * time.Millisecond)
			}
			util := regexp.MustCompile(`(?m)^DCGM_FI_DEV_GPU_UTIL\{.*\} \S+$`).FindAllString(body, -1)
			if !c.want {
				if strings.Contains(body, "DCGM_FI_") {
					t.Fatalf("/metrics without --dcgm-compat has DCGM names:\n%s", body)
				}
				return
			}
			if len(util) != 4 || !strings.Contains(body, "# TYPE DCGM_FI_DEV_GPU_UTIL gauge") {
				t.Fatalf("%d DCGM_FI_DEV_GPU_UTIL series, want one per simulated GPU (4):\n%s", len(util), body)
			}
			for _, want := range []string{`gpu="1"`, `Hostname="node-00001"`, `device="nvidia0"`, `UUID="GPU-`, `modelName="NVIDIA `} {
				if !strings.Contains(strings.Join(util, "\n"), want) {
					t.Errorf("DCGM_FI_DEV_GPU_UTIL has no series with %s:\n%s", want, strings.Join(util, "\n"))
				}
			}
			if !strings.Contains(body, "DCGM_FI_DEV_FB_USED{") || !strings.Contains(body, "DCGM_FI_DEV_XID_ERRORS{") {
				t.Errorf("/metrics lacks DCGM_FI_DEV_FB_USED or DCGM_FI_DEV_XID_ERRORS:\n%s", body)
			}
		})
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}
