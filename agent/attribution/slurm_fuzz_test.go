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
	f.Add("2", []byte(strings.Repeat("a", 70000)+"\n300\n")) // a line over bufio.Scanner's limit
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
		if !ok {
			if strings.TrimSpace(firstLine(content)) != "" {
				t.Fatalf("file %q starting with job %q mapped nothing", name, firstLine(content))
			}
			return
		}
		if job == "" || len(job) > maxJobLen || !utf8.ValidString(job) || strings.Contains(job, "\n") {
			t.Fatalf("file %q: job %q (%d bytes, valid UTF-8 %v)", name, job, len(job), utf8.ValidString(job))
		}
		if job != boundJob(job) {
			t.Fatalf("job %q is not bounded", job)
		}
	})
}

// firstLine is the first line of b, as bufio.Scanner reads it (a trailing \r dropped), when
// it is short enough to be scanned.
func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) >= 64*1024 {
		return ""
	}
	return strings.TrimSuffix(s, "\r")
}
