package attribution_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/gpufleet/gpufleet/agent/attribution"
)

// cgroupLimit is what SlurmJobFromCgroup reads of its input: 64 KiB.
const cgroupLimit = 64 << 10

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cgroup", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSlurmJobFromCgroup(t *testing.T) {
	// A line that the 64 KiB limit cuts inside its job id: job_12 of job_12345 must not be read.
	straddle := strings.Repeat("#", cgroupLimit-len("4:devices:/slurm/job_12")-1) + "\n4:devices:/slurm/job_12345\n"
	atLimit := strings.Repeat("#", cgroupLimit-len("\n4:devices:/slurm/job_12345\n")) + "\n4:devices:/slurm/job_12345\n"
	for _, tc := range []struct {
		name, in string
		want     string // "" when no job
	}{
		{"v1 slurm node", readTestdata(t, "v1-slurm"), "4242"},
		{"v2 slurm node", readTestdata(t, "v2-slurm"), "307"},
		{"hybrid, slurm on v1 under a NodeName prefix", readTestdata(t, "hybrid-slurm"), "12"},
		{"docker", readTestdata(t, "docker"), ""},
		{"kubepods", readTestdata(t, "kubepods"), ""},
		{"v1 without a trailing newline", "4:devices:/slurm/uid_0/job_9/step_0", "9"},
		{"v2 line preferred over an earlier v1 line", "4:devices:/slurm/uid_1/job_1/step_0\n0::/system.slice/slurmstepd.scope/job_2/step_0\n", "2"},
		{"v2 line without a job: the first v1 one with", "4:devices:/slurm/job_1\n3:memory:/slurm/job_5\n0::/user.slice\n", "1"},
		{"first v1 line with a job, after lines without", "5:cpu:/\n4:devices:/slurm/job_77/step_0\n3:memory:/slurm/job_78\n", "77"},
		{"slurmstepd's own cgroup", "0::/system.slice/slurmstepd.scope/job_4242/step_extern/slurm\n", "4242"},
		{"outermost job component", "0::/slurm/job_12/step_0/user/job_13\n", "12"},
		{"colon in the path", "0::/odd:dir/job_31\n", "31"},
		{"CRLF", "4:devices:/slurm/job_5\r\n", "5"},
		{"surrounding blanks", "  4:devices:/slurm/job_6  \n", "6"},
		{"empty", "", ""},
		{"blank lines", "\n\n \n", ""},
		{"job_ alone", "0::/slurm/job_/step_0\n", ""},
		{"myjob_1", "0::/home/myjob_1/step_0\n", ""},
		{"job_12abc", "0::/slurm/job_12abc\n", ""},
		{"job_-1", "0::/slurm/job_-1\n", ""},
		{"JOB_5", "0::/slurm/JOB_5\n", ""},
		{"jobs_5", "0::/slurm/jobs_5\n", ""},
		{"job_5.scope", "0::/slurm/job_5.scope\n", ""},
		{"non-ASCII digits", "0::/slurm/job_١٢\n", ""},
		{"job in the controller list, not the path", "4:job_5:/\n", ""},
		{"no path field", "4:devices\n0\n", ""},
		{"empty hierarchy id", ":devices:/slurm/job_3\n", ""},
		{"non-numeric hierarchy id", "x:devices:/slurm/job_3\n", ""},
		{"malformed lines around a good one", "garbage\n::\n:::\n4:devices:/slurm/job_8\n\x00\xff:\n", "8"},
		{"a job past 64 KiB of junk is not read", strings.Repeat("x", 1<<20) + "\n0::/slurm/job_1\n", ""},
		{"a job before 1 MiB of junk", "0::/slurm/job_1\n" + strings.Repeat("x", 1<<20), "1"},
		{"a line cut at the limit", straddle, ""},
		{"a line ending at the limit", atLimit, "12345"},
		{"a line ending at the limit, then more", atLimit + "0::/slurm/job_1\n", "12345"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := attribution.SlurmJobFromCgroup([]byte(tc.in))
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("SlurmJobFromCgroup = %q, %v; want %q, %v", got, ok, tc.want, tc.want != "")
			}
		})
	}
}

// procTree writes a fake proc filesystem: a <pid>/cgroup file per entry.
func procTree(t *testing.T, cgroups map[uint32]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, content := range cgroups {
		dir := filepath.Join(root, strconv.FormatUint(uint64(pid), 10))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func processes(byGPU map[string][]uint32) func(context.Context) (map[string][]uint32, error) {
	return func(context.Context) (map[string][]uint32, error) { return byGPU, nil }
}

func TestProcCgroups(t *testing.T) {
	root := procTree(t, map[uint32]string{
		100: "4:devices:/slurm/uid_1000/job_307/step_0/task_0\n",
		101: "0::/system.slice/slurmstepd.scope/job_12/step_0/user/task_0\n",
		102: "4:devices:/slurm/uid_1000/job_307/step_0/task_1\n",
		300: readTestdata(t, "docker"),
		301: readTestdata(t, "kubepods"),
	})
	// A cgroup that cannot be read for a reason other than the process exiting: a directory.
	if err := os.MkdirAll(filepath.Join(root, "400", "cgroup"), 0o755); err != nil {
		t.Fatal(err)
	}
	var readErrors []uint32
	p := attribution.ProcCgroups{
		Root: root,
		Processes: processes(map[string][]uint32{
			"GPU-a": {100, 101, 102},  // two jobs share it: sorted by value, 307 once
			"GPU-b": {200, 100},       // 200 exited after NVML listed it
			"GPU-c": {300, 301},       // containers, not Slurm jobs
			"GPU-d": {},               // idle
			"GPU-e": {400},            // unreadable
			"GPU-f": {200},            // only an exited process
			"GPU-g": {400, 101, 9999}, // unreadable, Slurm, exited
		}),
		ReadError: func(pid uint32, err error) {
			if err == nil {
				t.Errorf("pid %d: ReadError with a nil error", pid)
			}
			readErrors = append(readErrors, pid)
		},
	}
	got, err := p.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"GPU-a": "12,307", "GPU-b": "307", "GPU-g": "12"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("jobs %v, want %v", got, want)
	}
	// Pid 400 is on two GPUs but read once; exited pids are not errors.
	if !reflect.DeepEqual(readErrors, []uint32{400}) {
		t.Errorf("read errors for pids %v, want [400]", readErrors)
	}

	a, err := p.Assign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.ByUUID, want) || a.ByIndex != nil {
		t.Errorf("assignment %+v, want ByUUID %v", a, want)
	}
	if j := a.Job(0, "GPU-a"); j != "12,307" {
		t.Errorf("Job(0, GPU-a) = %q", j)
	}

	// Without ReadError an unreadable cgroup is skipped all the same.
	p.ReadError = nil
	if got, err := p.Jobs(context.Background()); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("without ReadError: %v %v, want %v", got, err, want)
	}
}

func TestProcCgroupsSortsByValue(t *testing.T) {
	cgroups := map[uint32]string{}
	var pids []uint32
	for i, job := range []string{"307", "9", "12", "1000", "12"} {
		pid := uint32(10 + i)
		cgroups[pid] = "0::/slurm/job_" + job + "\n"
		pids = append(pids, pid)
	}
	p := attribution.ProcCgroups{Root: procTree(t, cgroups), Processes: processes(map[string][]uint32{"GPU-a": pids})}
	got, err := p.Jobs(context.Background())
	if err != nil || got["GPU-a"] != "9,12,307,1000" {
		t.Errorf("jobs %v %v, want GPU-a 9,12,307,1000", got, err)
	}
}

// Many jobs on one GPU are joined and cut to the length ingest accepts, as mapping files are.
func TestProcCgroupsBoundsTheJob(t *testing.T) {
	cgroups := map[uint32]string{}
	var pids []uint32
	var all []string
	for i := range 100 {
		job := strconv.Itoa(100000 + i)
		cgroups[uint32(1000+i)] = "0::/slurm/job_" + job + "\n"
		pids = append(pids, uint32(1000+i))
		all = append(all, job)
	}
	p := attribution.ProcCgroups{Root: procTree(t, cgroups), Processes: processes(map[string][]uint32{"GPU-a": pids})}
	got, err := p.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(all, ",")[:200]; got["GPU-a"] != want {
		t.Errorf("job %q, want %q", got["GPU-a"], want)
	}
}

func TestProcCgroupsErrors(t *testing.T) {
	noNVML := errors.New("nvml: not initialized")
	p := attribution.ProcCgroups{
		Root:      t.TempDir(),
		Processes: func(context.Context) (map[string][]uint32, error) { return nil, noNVML },
	}
	got, err := p.Jobs(context.Background())
	if !errors.Is(err, noNVML) || err.Error() != "cgroup attribution: processes: nvml: not initialized" || got != nil {
		t.Errorf("processes error: %v %v", got, err)
	}
	if a, err := p.Assign(context.Background()); !errors.Is(err, noNVML) || a.ByUUID != nil {
		t.Errorf("Assign with a processes error: %+v %v", a, err)
	}

	if _, err := (attribution.ProcCgroups{}).Jobs(context.Background()); err == nil {
		t.Error("no Processes: no error")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Processes = processes(map[string][]uint32{"GPU-a": {1}})
	if _, err := p.Jobs(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// Root defaults to /proc: this test's own process is read without an error (on a host without
// /proc it is an exited process, which is not one either).
func TestProcCgroupsDefaultRoot(t *testing.T) {
	pid := uint32(os.Getpid())
	p := attribution.ProcCgroups{
		Processes: processes(map[string][]uint32{"GPU-a": {pid}}),
		ReadError: func(pid uint32, err error) { t.Errorf("pid %d: %v", pid, err) },
	}
	got, err := p.Jobs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile("/proc/self/cgroup")
	if job, ok := attribution.SlurmJobFromCgroup(b); ok != (got["GPU-a"] != "") || got["GPU-a"] != job {
		t.Errorf("jobs %v, want GPU-a %q as /proc/self/cgroup says", got, job)
	}
}
