package attribution

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// A mapping file is written by site prolog scripts (or anyone with write access to the directory):
// whatever its name and content, Jobs never fails on it or panics, maps only a file named by a GPU
// index, and a job it maps is one bounded line per job id, joined with commas, none of them blank.
func FuzzMappingDir(f *testing.F) {
	f.Add("0", []byte("12345\n"))
	f.Add("3", []byte("  100  \r\n\n200\n"))
	f.Add("7", []byte("\n \t\n"))
	f.Add("4294967295", []byte("x"))
	f.Add("4294967296", []byte("x"))
	f.Add("-1", []byte("x"))
	f.Add("gpu0", []byte("x"))
	f.Add("1", []byte("\xff\xfe\n"+strings.Repeat("é", 150)))
	f.Add("2", []byte(strings.Repeat("a", 70000)+"\n300\n")) // a line over bufio.Scanner's limit, which once mapped nothing
	f.Add("5", []byte("300\n"+strings.Repeat("b", 70000)+"\n400\n"))
	f.Add("6", []byte(strings.Repeat("7\n", 40000))) // past maxMappingBytes
	f.Fuzz(func(t *testing.T, name string, content []byte) {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 200 {
			return // not a file name
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Skip(err) // a name this file system refuses
		}
		jobs, err := MappingDir{Dir: dir}.Jobs()
		if err != nil {
			t.Fatalf("Jobs: %v", err)
		}
		idx, perr := strconv.ParseUint(name, 10, 32)
		if perr != nil {
			if len(jobs) != 0 {
				t.Fatalf("file %q is no GPU index, yet mapped %v", name, jobs)
			}
			return
		}
		job, ok := jobs[uint32(idx)]
		if len(jobs) > 1 || len(jobs) == 1 && !ok {
			t.Fatalf("file %q mapped %v", name, jobs)
		}
		if want := wantJob(content); job != want {
			t.Fatalf("file %q (%d bytes) mapped job %.80q (%d bytes), want %.80q (%d bytes)", name, len(content), job, len(job), want, len(want))
		}
		if ok && (job == "" || len(job) > maxJobLen || !utf8.ValidString(job) || strings.Contains(job, "\n")) {
			t.Fatalf("file %q: job %q (%d bytes, valid UTF-8 %v)", name, job, len(job), utf8.ValidString(job))
		}
	})
}

// wantJob is the job a mapping file holds, by the convention's definition: its non-blank lines
// (within the first maxMappingBytes), trimmed and joined with commas, bounded.
func wantJob(content []byte) string {
	if len(content) > maxMappingBytes {
		content = content[:maxMappingBytes]
	}
	var jobs []string
	for _, l := range strings.Split(string(content), "\n") {
		if j := strings.TrimSpace(l); j != "" {
			jobs = append(jobs, j)
		}
	}
	return boundJob(strings.Join(jobs, ","))
}
