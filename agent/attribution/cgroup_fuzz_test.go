package attribution_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gpufleet/gpufleet/agent/attribution"
)

// A cgroup file is read from any process on the node: any bytes give a job or none, never a panic,
// and a job is only ever an id that Slurm's job_<id> directory put there.
func FuzzSlurmJobFromCgroup(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "cgroup", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"0::/system.slice/slurmstepd.scope/job_4242/step_batch/user/task_0\n",
		"4:devices:/slurm/uid_1000/job_1/step_0\n0::/job_2\n",
		"0::/slurm/job_\n",
		"0::/slurm/job_12abc\n",
		"0::/home/myjob_1\n",
		"x:y\n:::\n\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		job, ok := attribution.SlurmJobFromCgroup(b)
		if !ok {
			if job != "" {
				t.Fatalf("not ok, but job %q", job)
			}
			return
		}
		if job == "" {
			t.Fatal("ok with an empty job")
		}
		for _, c := range []byte(job) {
			if c < '0' || c > '9' {
				t.Fatalf("job %q is not all digits", job)
			}
		}
		if !bytes.Contains(b, []byte("job_"+job)) {
			t.Fatalf("job %q is not in the input as job_%s", job, job)
		}
	})
}
