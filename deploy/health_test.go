package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The health check's install path, as slurm.conf names it and the script's header says.
const healthCheckProgram = "/usr/local/sbin/gpufleet-health-check"

// readSlurmConf reads slurm.conf's Key=Value lines (comments and blank lines skipped).
func readSlurmConf(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			t.Fatalf("%s:%d: %q is no Key=Value line", path, n, line)
		}
		if _, dup := kv[k]; dup {
			t.Errorf("%s:%d: %s set twice", path, n, k)
		}
		kv[k] = v
	}
	return kv
}

// TestSlurmHealthCheckConf: the slurm.conf lines name the installed script, an interval slurmd
// accepts and longer than its 60 s kill, and node states slurm.conf(5) defines; the script is
// valid bash (and shellcheck-clean where shellcheck is installed).
func TestSlurmHealthCheckConf(t *testing.T) {
	kv := readSlurmConf(t, filepath.Join("slurm", "slurm.conf.health"))
	if got := kv["HealthCheckProgram"]; got != healthCheckProgram {
		t.Errorf("HealthCheckProgram=%s, want %s", got, healthCheckProgram)
	}
	script, err := os.ReadFile(filepath.Join("slurm", "gpufleet-health-check.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(script, []byte("Install as "+healthCheckProgram)) {
		t.Errorf("the script's header does not say it installs as %s", healthCheckProgram)
	}
	iv, err := time.ParseDuration(kv["HealthCheckInterval"] + "s")
	if err != nil || iv <= 60*time.Second {
		t.Errorf("HealthCheckInterval=%s: want whole seconds over slurmd's 60 s limit on a run", kv["HealthCheckInterval"])
	}
	valid := []string{"ALLOC", "ANY", "CYCLE", "IDLE", "MIXED", "NONDRAINED_IDLE", "START_ONLY"}
	for _, s := range strings.Split(kv["HealthCheckNodeState"], ",") {
		if !slices.Contains(valid, s) {
			t.Errorf("HealthCheckNodeState %q: %s is none of %v", kv["HealthCheckNodeState"], s, valid)
		}
	}
	for k := range kv {
		if !strings.HasPrefix(k, "HealthCheck") {
			t.Errorf("%s in slurm.conf.health: only the HealthCheck* settings belong there", k)
		}
	}
	if out, err := exec.Command("bash", "-n", filepath.Join("slurm", "gpufleet-health-check.sh")).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v\n%s", err, out)
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, "--shell=bash", filepath.Join("slurm", "gpufleet-health-check.sh")).CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	} else {
		t.Log("shellcheck is not installed: bash -n only")
	}
	if fi, err := os.Stat(filepath.Join("slurm", "gpufleet-health-check.sh")); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("the script is not executable: %v %v", fi.Mode(), err)
	}
}

// writeScript writes an executable bash script.
func writeScript(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/bash\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSlurmHealthCheckScript runs deploy/slurm/gpufleet-health-check.sh as slurmd does (bash, no
// PATH, only its settings) against the real binary (this host has no NVIDIA driver: CRITICAL, so
// it drains) and against stand-ins for the binary's other outcomes, with a stand-in scontrol that
// records its arguments and shows the node as the case has it. The script always exits 0 (slurmd
// would not register a node whose check fails at start-up) and drains, resumes or leaves the node
// as the exit code says.
func TestSlurmHealthCheckScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash: the script is bash")
	}
	dir := t.TempDir()
	real := buildGpufleet(t, dir, "gpufleet", "agentonly")
	calls := filepath.Join(dir, "scontrol.calls")
	scontrol := writeScript(t, filepath.Join(dir, "scontrol"), `
if [ "$1" = -o ] && [ "$2" = show ]; then printf '%s\n' "$STUB_SHOW"; exit 0; fi
printf '%s|' "$@" >>"$STUB_CALLS"; echo >>"$STUB_CALLS"
`)
	// stand-in prints lines and exits with a code, recording its arguments: the outcomes a GPU-less
	// host cannot produce from the real binary.
	standIn := func(name string, code int, lines ...string) string {
		body := "printf '%s ' \"$@\" >" + filepath.Join(dir, name+".args") + "\n"
		for _, l := range lines {
			body += "echo '" + l + "'\n"
		}
		body += "echo 'a log line' >&2\nexit " + string(rune('0'+code)) + "\n"
		return writeScript(t, filepath.Join(dir, name), body)
	}
	remap := standIn("remap", 2, "GPU 2 GPU-5eed0002 CRITICAL reset_gpu: remap_pending=1 (rows were remapped that only a GPU reset applies)", "CRITICAL: 8 GPUs, 7 healthy, worst reset_gpu")
	ok := standIn("ok", 0, "OK: 8 GPUs, 8 healthy")
	warn := standIn("warn", 1, "GPU 1 GPU-5eed0001 WARN degraded: viol_thermal_ns grew 60 % of 10s", "WARN: 8 GPUs, 7 healthy, worst degraded")
	ours := "NodeName=gpu-node-7 Arch=x86_64 State=IDLE+DRAIN ThreadsPerCore=2 Reason=gpufleet health-check: GPU 2 GPU-5eed0002 CRITICAL reset_gpu: remap_pending=1 [root@2026-12-02T08:00:00]"
	theirs := "NodeName=gpu-node-7 Arch=x86_64 State=IDLE+DRAIN ThreadsPerCore=2 Reason=replacing a DIMM [alice@2026-12-02T08:00:00]"
	idle := "NodeName=gpu-node-7 Arch=x86_64 State=IDLE ThreadsPerCore=2"
	const drainNVML = "update|nodename=gpu-node-7|state=drain|reason=gpufleet health-check: CRITICAL: NVML (libnvidia-ml.so.1) was not found: the NVIDIA driver is not installed or not loaded, so no GPU on this node can be used|"
	resume := "update|nodename=gpu-node-7|state=resume|"
	for _, tc := range []struct {
		name     string
		bin      string
		show     string
		defaults string // the /etc/default file's contents
		calls    []string
		log      string
	}{
		{name: "the real binary without a driver drains", bin: real, show: idle, calls: []string{drainNVML}, log: "CRITICAL, draining"},
		{name: "critical drains with the first finding", bin: remap, show: idle,
			calls: []string{"update|nodename=gpu-node-7|state=drain|reason=gpufleet health-check: GPU 2 GPU-5eed0002 CRITICAL reset_gpu: remap_pending=1 (rows were remapped that only a GPU reset applies)|"}},
		{name: "ok resumes a node it drained", bin: ok, show: ours, calls: []string{resume}, log: "passes again"},
		{name: "ok leaves a node someone else drained", bin: ok, show: theirs},
		{name: "ok leaves a node in service", bin: ok, show: idle},
		{name: "warn logs and resumes a node it drained", bin: warn, show: ours, calls: []string{resume}, log: "WARN: GPU 1"},
		{name: "resuming off", bin: ok, show: ours, defaults: "GPUFLEET_HEALTH_RESUME=0\n"},
		{name: "a missing binary drains", bin: filepath.Join(dir, "no-such-binary"), show: idle,
			calls: []string{"update|nodename=gpu-node-7|state=drain|reason=gpufleet health-check: check could not run (exit 127): |"}, log: "could not run (exit 127)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(calls)
			defaults := filepath.Join(dir, "defaults")
			if err := os.WriteFile(defaults, []byte(tc.defaults), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bash, filepath.Join("slurm", "gpufleet-health-check.sh"))
			cmd.Env = []string{"GPUFLEET_BIN=" + tc.bin, "SCONTROL=" + scontrol, "GPUFLEET_SLURM_NODE=gpu-node-7",
				"GPUFLEET_HEALTH_DEFAULTS=" + defaults, "STUB_CALLS=" + calls, "STUB_SHOW=" + tc.show}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if out, err := cmd.Output(); err != nil {
				t.Fatalf("exit %v (slurmd would not register the node); stdout %q stderr %q", err, out, stderr.String())
			}
			got := readCalls(t, calls)
			if !slices.Equal(got, tc.calls) {
				t.Errorf("scontrol calls\n%q\nwant\n%q\nstderr %s", got, tc.calls, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.log) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.log)
			}
		})
	}

	// Flags from the defaults file reach the binary; the node is hostname -s unless named.
	os.Remove(calls)
	defaults := filepath.Join(dir, "defaults")
	if err := os.WriteFile(defaults, []byte("GPUFLEET_HEALTH_ARGS=\"--expect-gpus 8 --window 10s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, filepath.Join("slurm", "gpufleet-health-check.sh"))
	cmd.Env = []string{"GPUFLEET_BIN=" + remap, "SCONTROL=" + scontrol, "GPUFLEET_HEALTH_DEFAULTS=" + defaults, "STUB_CALLS=" + calls}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	args, err := os.ReadFile(filepath.Join(dir, "remap.args"))
	if err != nil || string(args) != "health-check --expect-gpus 8 --window 10s " {
		t.Errorf("the binary got %q (%v), want health-check and the defaults file's flags", args, err)
	}
	host, err := exec.Command("hostname", "-s").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := readCalls(t, calls); len(got) != 1 || !strings.HasPrefix(got[0], "update|nodename="+strings.TrimSpace(string(host))+"|state=drain|") {
		t.Errorf("scontrol calls %q, want a drain of this host (%s)", got, strings.TrimSpace(string(host)))
	}
}

func readCalls(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// The shapes of node-problem-detector's custom plugin monitor config, copied from its source
// (pkg/custompluginmonitor/types/config.go and types.go, pkg/types/types.go: CustomPluginConfig,
// pluginGlobalConfig, CustomRule, Condition) because no NPD Go module is among the packages this
// build may use. Decoding rejects unknown keys, so a misspelt key fails here, not silently in NPD.
type npdConfig struct {
	Plugin       string          `json:"plugin"`
	PluginConfig npdGlobalConfig `json:"pluginConfig"`
	Source       string          `json:"source"`
	Conditions   []npdCondition  `json:"conditions"`
	Rules        []npdRule       `json:"rules"`
	Metrics      *bool           `json:"metricsReporting"`
}

type npdGlobalConfig struct {
	InvokeInterval                          *string `json:"invoke_interval"`
	Timeout                                 *string `json:"timeout"`
	MaxOutputLength                         *int    `json:"max_output_length"`
	Concurrency                             *int    `json:"concurrency"`
	EnableMessageChangeBasedConditionUpdate *bool   `json:"enable_message_change_based_condition_update"`
	SkipInitialStatus                       *bool   `json:"skip_initial_status"`
}

type npdCondition struct {
	Type       string `json:"type"`
	Status     string `json:"status"`
	Transition string `json:"transition"`
	Reason     string `json:"reason"`
	Message    string `json:"message"`
}

type npdRule struct {
	Type           string   `json:"type"`
	Condition      string   `json:"condition"`
	Reason         string   `json:"reason"`
	Path           string   `json:"path"`
	Args           []string `json:"args"`
	Timeout        *string  `json:"timeout"`
	InvokeInterval *string  `json:"invoke_interval"`
}

// TestNPDHealthMonitorConfig decodes deploy/npd/gpufleet-health-monitor.json into
// NPD's shape, applies the checks NPD's Validate makes (plugin "custom", each rule's timeout
// within the global one, a default condition for every permanent rule) and what this plugin
// needs (the binary's --check-timeout under the rule's timeout, NPD's message length), and runs
// each rule's arguments through the built binary: on this host without the driver each must exit
// 1 (NPD's NonOK) with the NVML line, never 2, which NPD reads as Unknown and a usage error would be.
func TestNPDHealthMonitorConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("npd", "gpufleet-health-monitor.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c npdConfig
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decode into NPD's CustomPluginConfig: %v", err)
	}
	if c.Plugin != "custom" {
		t.Errorf("plugin %q: NPD supports only \"custom\"", c.Plugin)
	}
	if c.Source == "" {
		t.Error("no source")
	}
	dur := func(what string, s *string, def time.Duration) time.Duration {
		t.Helper()
		if s == nil {
			return def
		}
		d, err := time.ParseDuration(*s)
		if err != nil || d <= 0 {
			t.Errorf("%s %q: %v", what, *s, err)
		}
		return d
	}
	global := dur("pluginConfig.timeout", c.PluginConfig.Timeout, 5*time.Second) // NPD's defaults
	interval := dur("pluginConfig.invoke_interval", c.PluginConfig.InvokeInterval, 30*time.Second)
	if interval < global {
		t.Errorf("invoke_interval %s under the timeout %s: runs would overlap", interval, global)
	}
	if n := c.PluginConfig.MaxOutputLength; n == nil || *n < 80 {
		t.Errorf("max_output_length %v: the first finding line needs more than NPD's default 80", n)
	}
	conds := map[string]bool{}
	for _, cd := range c.Conditions {
		if cd.Type == "" || cd.Reason == "" || cd.Message == "" {
			t.Errorf("default condition %+v: type, reason and message are needed", cd)
		}
		conds[cd.Type] = true
	}
	bin := buildGpufleet(t, t.TempDir(), "gpufleet", "agentonly")
	checkTimeout := regexp.MustCompile(`--check-timeout[ =](\S+)`)
	reasons := regexp.MustCompile(`^[A-Z][A-Za-z]+$`)
	for i, r := range c.Rules {
		switch r.Type {
		case "permanent":
			if !conds[r.Condition] {
				t.Errorf("rule %d: permanent problem %q has no default condition (NPD refuses the config)", i, r.Condition)
			}
		case "temporary":
		default:
			t.Errorf("rule %d: type %q, want temporary or permanent", i, r.Type)
		}
		if !reasons.MatchString(r.Reason) {
			t.Errorf("rule %d: reason %q, want a CamelCase word as Kubernetes reasons are", i, r.Reason)
		}
		if r.Path != "/usr/local/bin/gpufleet" || len(r.Args) == 0 || r.Args[0] != "health-check" || !slices.Contains(r.Args, "--npd") {
			t.Errorf("rule %d: %s %q, want /usr/local/bin/gpufleet health-check --npd …", i, r.Path, r.Args)
		}
		timeout := dur("rule timeout", r.Timeout, global)
		if timeout > global {
			t.Errorf("rule %d: timeout %s over the global %s (NPD refuses the config)", i, timeout, global)
		}
		m := checkTimeout.FindStringSubmatch(strings.Join(r.Args, " "))
		if m == nil {
			t.Errorf("rule %d: no --check-timeout: the binary's default must then be under %s", i, timeout)
		} else if ct, err := time.ParseDuration(m[1]); err != nil || ct >= timeout {
			t.Errorf("rule %d: --check-timeout %s not under the rule's timeout %s: NPD would kill it first", i, m[1], timeout)
		}
		if _, err := exec.LookPath("nvidia-smi"); err == nil {
			continue // a GPU host: the no-driver answer below is not what it gives
		}
		cmd := exec.Command(bin, r.Args...)
		cmd.Env = []string{}
		out, err := cmd.Output()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.HasPrefix(string(out), "CRITICAL: NVML (libnvidia-ml.so.1) was not found") {
			t.Errorf("rule %d: %q exit %v, stdout %q; want NPD's NonOK (1) with the NVML line", i, r.Args, err, out)
		}
	}
}
