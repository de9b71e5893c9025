package deploy_test

import (
	"bufio"
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/agent/attribution"
)

// The units' ExecStart binary: the full gpufleet on ingest and API hosts, the agent-only build
// (make agent) installed under the same name on GPU nodes.
const unitBinary = "/usr/local/bin/gpufleet"

// systemdUnit is a unit file's settings: section → key → values in file order (a key such as
// DeviceAllow= may repeat).
type systemdUnit map[string]map[string][]string

func (u systemdUnit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// readSystemdUnit parses the INI-like unit syntax of systemd.syntax(7): [Section] headers,
// Key=Value lines, # and ; comments, a trailing backslash continuing the line.
func readSystemdUnit(t *testing.T, path string) systemdUnit {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := systemdUnit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	var cont string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if cont != "" {
			line, cont = cont+" "+line, ""
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cont = s
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			t.Fatalf("%s:%d: not a [Section] or Key=Value line: %q", path, n, line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	return u
}

// systemdSeconds parses a systemd time span of the forms the units use: "45s", "1min", "60".
func systemdSeconds(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(strings.ReplaceAll(strings.ReplaceAll(s, " ", ""), "min", "m"))
}

// sourceDuration is the value of the time.Duration constant name in a Go file of this repository,
// of the form N * time.Unit, so that a unit's stop timeout follows the code's flush time.
func sourceDuration(t *testing.T, file, name string) time.Duration {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]time.Duration{"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, id := range vs.Names {
				if id.Name != name || i >= len(vs.Values) {
					continue
				}
				be, ok := vs.Values[i].(*ast.BinaryExpr)
				if !ok || be.Op != token.MUL {
					t.Fatalf("%s: %s is not N * time.Unit", file, name)
				}
				lit, ok1 := be.X.(*ast.BasicLit)
				sel, ok2 := be.Y.(*ast.SelectorExpr)
				if !ok1 || !ok2 || lit.Kind != token.INT || units[sel.Sel.Name] == 0 {
					t.Fatalf("%s: %s is not N * time.Unit", file, name)
				}
				n, err := strconv.Atoi(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				return time.Duration(n) * units[sel.Sel.Name]
			}
		}
	}
	t.Fatalf("%s: no constant %s", file, name)
	return 0
}

// unitSpec is what a unit must say.
type unitSpec struct {
	file    string
	command string // the gpufleet subcommand ExecStart runs
	// stopAfter is the longest the command takes to stop on SIGTERM; TimeoutStopSec must exceed
	// it with room to spare, or systemd kills a flush in the middle.
	stopAfter time.Duration
	// gpu: the agent, which needs the NVIDIA devices and the whole /proc.
	gpu bool
}

func unitSpecs(t *testing.T) []unitSpec {
	return []unitSpec{
		{file: "gpufleet-agent.service", command: "agent", stopAfter: sourceDuration(t, "agent/agent.go", "flushTimeout"), gpu: true},
		{file: "gpufleet-ingest.service", command: "ingest", stopAfter: sourceDuration(t, "ingest/ingest.go", "shutdownFlush")},
		// The HTTP server's shutdown grace (cmd/gpufleet/apiserve.go).
		{file: "gpufleet-api.service", command: "api", stopAfter: 2 * time.Second},
	}
}

// The hardening every unit has, whatever its command.
var systemdHardening = map[string]string{
	"DynamicUser":              "yes",
	"ProtectSystem":            "strict",
	"ProtectHome":              "yes",
	"PrivateTmp":               "yes",
	"NoNewPrivileges":          "yes",
	"CapabilityBoundingSet":    "",
	"RestrictAddressFamilies":  "AF_INET AF_INET6 AF_UNIX",
	"SystemCallFilter":         "@system-service",
	"SystemCallArchitectures":  "native",
	"ProtectKernelTunables":    "yes",
	"ProtectKernelModules":     "yes",
	"ProtectControlGroups":     "yes",
	"RestrictNamespaces":       "yes",
	"RestrictSUIDSGID":         "yes",
	"Restart":                  "on-failure",
	"RestartPreventExitStatus": "2", // a usage error, which a restart repeats
}

// TestSystemdUnitSettings checks each unit's ExecStart, restart policy, stop timeout against the
// command's flush time, hardening, and the agent's devices, /proc and state directory. It needs
// nothing installed, so it runs wherever systemd-analyze cannot (TestSystemdUnitsVerify).
func TestSystemdUnitSettings(t *testing.T) {
	for _, spec := range unitSpecs(t) {
		t.Run(spec.file, func(t *testing.T) {
			u := readSystemdUnit(t, filepath.Join("systemd", spec.file))
			if u["Install"]["WantedBy"] == nil {
				t.Error("[Install] WantedBy unset: systemctl enable would not start it at boot")
			}
			exec := strings.Fields(u.last("Service", "ExecStart"))
			if len(exec) < 2 || exec[0] != unitBinary || exec[1] != spec.command {
				t.Errorf("ExecStart %q: want %s %s ...", exec, unitBinary, spec.command)
			}
			if !slices.Contains(u["Service"]["EnvironmentFile"], "/etc/gpufleet/gpufleet.env") {
				t.Errorf("EnvironmentFile %q: want /etc/gpufleet/gpufleet.env", u["Service"]["EnvironmentFile"])
			}
			for k, want := range systemdHardening {
				if got, ok := u["Service"][k]; !ok || got[len(got)-1] != want {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			if rs, err := systemdSeconds(u.last("Service", "RestartSec")); err != nil || rs < time.Second {
				t.Errorf("RestartSec %q: want at least 1s (%v), so a failing start does not spin", u.last("Service", "RestartSec"), err)
			}
			stop, err := systemdSeconds(u.last("Service", "TimeoutStopSec"))
			if err != nil {
				t.Errorf("TimeoutStopSec %q: %v", u.last("Service", "TimeoutStopSec"), err)
			} else if stop < spec.stopAfter+5*time.Second {
				t.Errorf("TimeoutStopSec %v: the %s takes up to %v to flush on SIGTERM; want at least 5 s more, or systemd kills it mid-flush",
					stop, spec.command, spec.stopAfter)
			}

			devices := u["Service"]["DeviceAllow"]
			if spec.gpu {
				// NVML opens /dev/nvidiactl and /dev/nvidia<N>, major 195, named "nvidia" and
				// "nvidiactl" in /proc/devices by current drivers and "nvidia-frontend" by older
				// ones; with DeviceAllow set the policy must be closed to keep /dev/null and co.
				for _, want := range []string{"char-nvidia rw", "char-nvidiactl rw", "char-nvidia-frontend rw", "char-nvidia-uvm rw", "char-nvidia-caps r"} {
					if !slices.Contains(devices, want) {
						t.Errorf("DeviceAllow %q lacks %q", devices, want)
					}
				}
				if p := u.last("Service", "DevicePolicy"); p != "closed" {
					t.Errorf("DevicePolicy %q: want closed", p)
				}
				if u.last("Service", "PrivateDevices") == "yes" {
					t.Error("PrivateDevices=yes hides the GPUs from NVML")
				}
				// NVML reads /proc/driver/nvidia; --slurm-cgroups reads /proc/<pid>/cgroup of
				// other users' GPU processes.
				if p := u.last("Service", "ProtectProc"); p != "" && p != "default" {
					t.Errorf("ProtectProc=%s hides other users' processes from --slurm-cgroups", p)
				}
				if p := u.last("Service", "ProcSubset"); p != "" && p != "all" {
					t.Errorf("ProcSubset=%s hides /proc/driver/nvidia from NVML", p)
				}
				// The spool must be the unit's StateDirectory, kept across restarts and owned by
				// the dynamic user: --state-dir on the command line names it.
				state := u.last("Service", "StateDirectory")
				if state == "" {
					t.Error("StateDirectory unset: the spool has nowhere to live under ProtectSystem=strict")
				}
				if i := slices.Index(exec, "--state-dir"); i < 0 || i+1 >= len(exec) || exec[i+1] != "/var/lib/"+state {
					t.Errorf("ExecStart %q: want --state-dir /var/lib/%s (the StateDirectory)", exec, state)
				}
			} else {
				if devices != nil {
					t.Errorf("DeviceAllow %q on a unit that uses no device", devices)
				}
				if u.last("Service", "PrivateDevices") != "yes" {
					t.Error("PrivateDevices unset on a unit that uses no device")
				}
			}
			for _, p := range u["Service"]["ReadWritePaths"] {
				t.Errorf("ReadWritePaths=%s: no gpufleet daemon writes outside its StateDirectory", p)
			}
		})
	}
}

// buildGpufleet builds cmd/gpufleet into dir, with the given build tags.
func buildGpufleet(t *testing.T, dir, name, tags string) string {
	t.Helper()
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		if gobin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command to build the binary with")
		}
	}
	out := filepath.Join(dir, name)
	cmd := exec.Command(gobin, "build", "-tags="+tags, "-o", out, "./cmd/gpufleet")
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags=%q: %v\n%s", tags, err, b)
	}
	return out
}

var gpufleetVar = regexp.MustCompile(`GPUFLEET_[A-Z0-9_]+`)

// helpOf is `bin command --help`: the command's flags and the variables it reads.
func helpOf(t *testing.T, bin, command string) string {
	t.Helper()
	cmd := exec.Command(bin, command, "--help")
	cmd.Env = []string{}
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s --help: %v\n%s", bin, command, err, b)
	}
	return string(b)
}

// envExampleVars reads the GPUFLEET_* settings of the env example, set or commented out, by
// its "# [section]" headers.
func envExampleVars(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("systemd", "gpufleet.env.example"))
	if err != nil {
		t.Fatal(err)
	}
	header := regexp.MustCompile(`^# \[([a-z]+)\]`)
	setting := regexp.MustCompile(`^#?(GPUFLEET_[A-Z0-9_]+)=(.*)$`)
	vars := map[string][]string{}
	section := ""
	for n, line := range strings.Split(string(b), "\n") {
		if m := header.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		m := setting.FindStringSubmatch(line)
		if m == nil {
			if strings.Contains(line, "GPUFLEET_") && !strings.HasPrefix(line, "# ") {
				t.Errorf("gpufleet.env.example:%d: %q is neither a setting nor a comment", n+1, line)
			}
			continue
		}
		if section == "" {
			t.Errorf("gpufleet.env.example:%d: %s before any # [section]", n+1, m[1])
		}
		// systemd keeps a # after the value as part of it.
		if strings.Contains(m[2], "#") {
			t.Errorf("gpufleet.env.example:%d: %s's value %q holds a #, which systemd keeps in the value", n+1, m[1], m[2])
		}
		vars[section] = append(vars[section], m[1])
	}
	return vars
}

// TestSystemdEnvAndFlags builds both binaries and checks that each GPUFLEET_* variable of the env
// example, and each flag of the units' ExecStart, is one the commands of its role read: a
// misspelt variable is otherwise ignored without a word. The agent's are checked against the
// agent-only build that GPU nodes run.
func TestSystemdEnvAndFlags(t *testing.T) {
	dir := t.TempDir()
	full := buildGpufleet(t, dir, "gpufleet", "")
	agentOnly := buildGpufleet(t, dir, "gpufleet-agent", "agentonly")
	help := map[string]string{
		"agent":  helpOf(t, agentOnly, "agent"),
		"topics": helpOf(t, agentOnly, "topics"),
		"ingest": helpOf(t, full, "ingest"),
		"api":    helpOf(t, full, "api"),
	}
	readers := map[string][]string{
		"common": {"agent", "ingest", "topics"},
		"agent":  {"agent"},
		"ingest": {"ingest"},
		"api":    {"api"},
	}
	vars := envExampleVars(t)
	if got := slices.Sorted(maps.Keys(vars)); !slices.Equal(got, slices.Sorted(maps.Keys(readers))) {
		t.Errorf("env example sections %q, want %q", got, slices.Sorted(maps.Keys(readers)))
	}
	for section, names := range vars {
		for _, name := range names {
			for _, command := range readers[section] {
				if !slices.Contains(gpufleetVar.FindAllString(help[command], -1), name) {
					t.Errorf("env example [%s]: %s is read by no flag of gpufleet %s", section, name, command)
				}
			}
		}
	}

	flag := regexp.MustCompile(`^--([a-z0-9-]+)`)
	for _, spec := range unitSpecs(t) {
		u := readSystemdUnit(t, filepath.Join("systemd", spec.file))
		for _, arg := range strings.Fields(u.last("Service", "ExecStart"))[2:] {
			m := flag.FindStringSubmatch(arg)
			if m == nil {
				continue
			}
			if !strings.Contains(help[spec.command], "--"+m[1]+" ") {
				t.Errorf("%s: ExecStart flag --%s is not one of gpufleet %s's", spec.file, m[1], spec.command)
			}
		}
	}

	t.Run("verify", func(t *testing.T) { verifySystemdUnits(t, full, agentOnly) })
}

// verifySystemdUnits runs systemd-analyze verify on copies of the units whose ExecStart names the
// binaries just built (verify refuses a unit whose binary does not exist). Any output fails: an
// unknown or misspelt setting is only a warning, and the exit status stays 0.
func verifySystemdUnits(t *testing.T, full, agentOnly string) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): the units' syntax is unchecked; TestSystemdUnitSettings still checks their settings")
	}
	dir := t.TempDir()
	var files []string
	for _, spec := range unitSpecs(t) {
		b, err := os.ReadFile(filepath.Join("systemd", spec.file))
		if err != nil {
			t.Fatal(err)
		}
		bin := full
		if spec.gpu {
			bin = agentOnly
		}
		b = bytes.ReplaceAll(b, []byte("ExecStart="+unitBinary+" "), []byte("ExecStart="+bin+" "))
		f := filepath.Join(dir, spec.file)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...)
	out, err := cmd.CombinedOutput()
	if bytes.Contains(out, []byte("Failed to initialize manager")) || bytes.Contains(out, []byte("Failed to allocate manager")) {
		t.Skipf("systemd-analyze verify cannot run here (%s): the units' syntax is unchecked", bytes.TrimSpace(out))
	}
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// slurmStep is one run of a Slurm prolog or epilog script and the job mapping the agent reads
// after it.
type slurmStep struct {
	name   string
	script string   // prolog.sh or epilog.sh
	env    []string // Slurm's variables for the run
	want   map[uint32]string
	stderr string // a warning the script must log, if any
}

// runSlurmScript runs deploy/slurm/<script> as slurmd does: bash, no PATH, only the variables given.
func runSlurmScript(t *testing.T, bash, script string, env []string) (stderr string) {
	t.Helper()
	cmd := exec.Command(bash, filepath.Join("slurm", script))
	cmd.Env = env
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v (a failing Prolog or Epilog drains the node)\nstdout: %s\nstderr: %s", script, env, err, out, errb.Bytes())
	}
	return errb.String()
}

// TestSlurmPrologEpilog runs the example prolog and epilog on a sequence of jobs sharing a node's
// GPUs and reads the mapping directory after each with the agent's own reader
// (attribution.MappingDir), so the scripts write exactly the format the agent parses.
func TestSlurmPrologEpilog(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash: the Slurm scripts are bash")
	}
	dir := filepath.Join(t.TempDir(), "jobs") // made by the first prolog
	mapping := "GPUFLEET_JOB_MAPPING_DIR=" + dir
	steps := []slurmStep{
		{name: "first job", script: "prolog.sh", env: []string{"SLURM_JOB_ID=101", "SLURM_JOB_GPUS=0,1"},
			want: map[uint32]string{0: "101", 1: "101"}},
		{name: "a job sharing GPU 1, GPUs from CUDA_VISIBLE_DEVICES with a range", script: "prolog.sh",
			env:  []string{"SLURM_JOB_ID=102", "CUDA_VISIBLE_DEVICES=1,2-3"},
			want: map[uint32]string{0: "101", 1: "101,102", 2: "102", 3: "102"}},
		{name: "the prolog run twice for one job", script: "prolog.sh", env: []string{"SLURM_JOB_ID=102", "SLURM_JOB_GPUS=1,2,3"},
			want: map[uint32]string{0: "101", 1: "101,102", 2: "102", 3: "102"}},
		{name: "a job without GPUs", script: "prolog.sh", env: []string{"SLURM_JOB_ID=103"},
			want: map[uint32]string{0: "101", 1: "101,102", 2: "102", 3: "102"}},
		{name: "SLURM_JOB_GPUS wins over a job-relative CUDA_VISIBLE_DEVICES", script: "prolog.sh",
			env:  []string{"SLURM_JOB_ID=104", "SLURM_JOB_GPUS=5", "CUDA_VISIBLE_DEVICES=0"},
			want: map[uint32]string{0: "101", 1: "101,102", 2: "102", 3: "102", 5: "104"}},
		{name: "GPU UUIDs are not indexes", script: "prolog.sh",
			env:    []string{"SLURM_JOB_ID=105", "CUDA_VISIBLE_DEVICES=GPU-8ac5b0c2-0c0b-4a1e-9e1b-1d6f3c1a2b3c"},
			want:   map[uint32]string{0: "101", 1: "101,102", 2: "102", 3: "102", 5: "104"},
			stderr: "is not an index"},
		{name: "first job ends", script: "epilog.sh", env: []string{"SLURM_JOB_ID=101"},
			want: map[uint32]string{1: "102", 2: "102", 3: "102", 5: "104"}},
		{name: "the epilog of a job that never ran here", script: "epilog.sh", env: []string{"SLURM_JOB_ID=999"},
			want: map[uint32]string{1: "102", 2: "102", 3: "102", 5: "104"}},
		{name: "a job id that is no number", script: "epilog.sh", env: []string{"SLURM_JOB_ID=1;rm"},
			want:   map[uint32]string{1: "102", 2: "102", 3: "102", 5: "104"},
			stderr: "is not a job id"},
		{name: "the rest end", script: "epilog.sh", env: []string{"SLURM_JOB_ID=102"},
			want: map[uint32]string{5: "104"}},
		{name: "the last ends", script: "epilog.sh", env: []string{"SLURM_JOB_ID=104"},
			want: map[uint32]string{}},
	}
	for _, st := range steps {
		stderr := runSlurmScript(t, bash, st.script, append([]string{mapping}, st.env...))
		got, err := attribution.MappingDir{Dir: dir}.Jobs()
		if err != nil {
			t.Fatalf("%s: MappingDir.Jobs: %v", st.name, err)
		}
		if !maps.Equal(got, st.want) {
			t.Errorf("%s (%s %q): agent reads %v, want %v", st.name, st.script, st.env, got, st.want)
		}
		// The agent is another user than slurmd's root: what it reads must be world-readable.
		for idx := range got {
			fi, err := os.Stat(filepath.Join(dir, strconv.FormatUint(uint64(idx), 10)))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o004 == 0 {
				t.Errorf("%s: mapping file %d is %v: the agent's user cannot read it", st.name, idx, fi.Mode())
			}
		}
		if st.stderr == "" && stderr != "" || !strings.Contains(stderr, st.stderr) {
			t.Errorf("%s (%s %q): stderr %q, want %q", st.name, st.script, st.env, stderr, st.stderr)
		}
	}
	// A GPU whose jobs all ended has no file left.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			t.Errorf("mapping file %s left after every job ended", e.Name())
		}
		if strings.HasPrefix(e.Name(), ".tmp.") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestSlurmScriptsNeverFail: a Prolog or Epilog that exits non-zero drains the node, so the
// scripts log a mapping directory they cannot write and exit 0.
func TestSlurmScriptsNeverFail(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash: the Slurm scripts are bash")
	}
	// A directory below a regular file cannot be made, even by root.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, script := range []string{"prolog.sh", "epilog.sh"} {
		for _, dir := range []string{filepath.Join(file, "jobs"), file} {
			stderr := runSlurmScript(t, bash, script, []string{"GPUFLEET_JOB_MAPPING_DIR=" + dir, "SLURM_JOB_ID=7", "SLURM_JOB_GPUS=0"})
			if script == "prolog.sh" && !strings.Contains(stderr, "not written") {
				t.Errorf("%s with mapping dir %s: stderr %q, want the failure logged", script, dir, stderr)
			}
		}
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the file in place of the mapping dir: %v", err)
	}
}

// TestSlurmScriptsShellcheck lints the prolog and epilog, which run as root on every GPU node.
func TestSlurmScriptsShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck is not installed (apt-get install shellcheck): the Slurm scripts are not linted")
	}
	cmd := exec.Command(sc, "--shell=bash", filepath.Join("slurm", "prolog.sh"), filepath.Join("slurm", "epilog.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
}
