package attribution

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// DefaultProcRoot is where the proc filesystem is mounted.
const DefaultProcRoot = "/proc"

// maxCgroupBytes bounds what is read of one cgroup file: a real one is a line per hierarchy, well
// under a kilobyte, and anything past this is not a file the kernel wrote.
const maxCgroupBytes = 64 << 10

// SlurmJobFromCgroup returns the Slurm job id in the text of a /proc/<pid>/cgroup file.
//
// Slurm's task/cgroup plugin puts every task of a job under a job_<id> directory: on cgroup v1 in
// each controller's hierarchy (/slurm/uid_<uid>/job_<id>/step_<step>/task_<n>, or /slurm_<node>/...
// when several slurmds share a host), on cgroup v2 under slurmstepd's scope
// (/system.slice/slurmstepd.scope/job_<id>/step_<step>/...). Only a path component that is exactly
// job_ and ASCII digits counts, so a user's own "myjob_1" directory or a container runtime's path
// is no job.
func SlurmJobFromCgroup(content []byte) (job string, ok bool) {
	if len(content) > maxCgroupBytes {
		// A line cut at the limit could end in a shortened id (job_12 of job_123): it is dropped.
		content = content[:maxCgroupBytes]
		if i := bytes.LastIndexByte(content, '\n'); i >= 0 {
			content = content[:i]
		} else {
			return "", false
		}
	}
	var v1 string
	for len(content) > 0 {
		var line []byte
		line, content, _ = bytes.Cut(content, []byte{'\n'})
		hier, rest, ok := bytes.Cut(bytes.TrimSpace(line), []byte{':'})
		if !ok || len(hier) == 0 || !allDigits(hier) {
			continue
		}
		controllers, path, ok := bytes.Cut(rest, []byte{':'})
		if !ok {
			continue
		}
		id := jobInPath(path)
		if id == "" {
			continue
		}
		// On a hybrid host the unified (0::) line is where a v2-configured Slurm puts the job; the
		// v1 hierarchies there are systemd's or another tool's.
		if string(hier) == "0" && len(controllers) == 0 {
			return id, true
		}
		if v1 == "" {
			v1 = id
		}
	}
	return v1, v1 != ""
}

// jobInPath is the id of the outermost job_<digits> component of a cgroup path, or "". The
// outermost is Slurm's: a job's own tasks may nest cgroups below it.
func jobInPath(path []byte) string {
	for len(path) > 0 {
		var comp []byte
		comp, path, _ = bytes.Cut(path, []byte{'/'})
		if id, ok := bytes.CutPrefix(comp, []byte("job_")); ok && len(id) > 0 && allDigits(id) {
			return string(id)
		}
	}
	return ""
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ProcCgroups attributes each GPU to the Slurm jobs of the processes running on it, read from
// their cgroups: no prolog script or mapping directory is needed, only the PIDs NVML reports.
type ProcCgroups struct {
	// Root is the proc filesystem; default DefaultProcRoot.
	Root string
	// Processes returns the PIDs running on each GPU, by GPU UUID.
	Processes func(ctx context.Context) (map[string][]uint32, error)
	// ReadError, when set, is told of each PID whose cgroup file could not be read for a reason
	// other than the process having exited (which is routine between the NVML query and the
	// read); its GPU keeps the jobs its other PIDs name.
	ReadError func(pid uint32, err error)
}

// Jobs returns the Slurm job ids (sorted, comma-joined) of the processes on each GPU, by GPU UUID.
// A GPU whose processes are in no Slurm job has no entry.
func (p ProcCgroups) Jobs(ctx context.Context) (map[string]string, error) {
	if p.Processes == nil {
		return nil, errors.New("cgroup attribution: no Processes")
	}
	byGPU, err := p.Processes(ctx)
	if err != nil {
		return nil, fmt.Errorf("cgroup attribution: processes: %w", err)
	}
	root := cmp.Or(p.Root, DefaultProcRoot)
	// One process often drives several GPUs: its cgroup is read once per call.
	jobOf := map[uint32]string{}
	out := map[string]string{}
	for uuid, pids := range byGPU {
		var jobs []string
		for _, pid := range pids {
			job, seen := jobOf[pid]
			if !seen {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("cgroup attribution: %w", err)
				}
				job = p.readJob(root, pid)
				jobOf[pid] = job
			}
			if job != "" && !slices.Contains(jobs, job) {
				jobs = append(jobs, job)
			}
		}
		if len(jobs) == 0 {
			continue
		}
		slices.SortFunc(jobs, cmpDecimal)
		out[uuid] = boundJob(strings.Join(jobs, ","))
	}
	return out, nil
}

// readJob is the Slurm job of pid, or "" when it has none or its cgroup cannot be read.
func (p ProcCgroups) readJob(root string, pid uint32) string {
	b, err := readCgroup(filepath.Join(root, strconv.FormatUint(uint64(pid), 10), "cgroup"))
	if err != nil {
		// ENOENT from open, ESRCH from a read of a process that exited after it: both mean the
		// process is gone, which NVML's list being a moment old makes routine.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ESRCH) && p.ReadError != nil {
			p.ReadError(pid, err)
		}
		return ""
	}
	job, _ := SlurmJobFromCgroup(b)
	return job
}

func readCgroup(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// One byte past the limit tells SlurmJobFromCgroup that the last line may be cut.
	return io.ReadAll(io.LimitReader(f, maxCgroupBytes+1))
}

// cmpDecimal orders decimal strings by value, so that job 307 sorts after job 12.
func cmpDecimal(a, b string) int {
	ta, tb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if c := cmp.Compare(len(ta), len(tb)); c != 0 {
		return c
	}
	if c := strings.Compare(ta, tb); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}
