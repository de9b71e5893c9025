// Package attribution finds the job running on each GPU of the node, so that samples carry it in
// their job_id column.
package attribution

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MappingDir reads per-GPU job files in dcgm-exporter's --hpc-job-mapping-dir convention, which
// Slurm prolog/epilog scripts maintain: a file named after each busy GPU's index holding the job
// id (several lines when several jobs share the GPU; they are joined with commas). A GPU without a
// file runs no job.
type MappingDir struct {
	Dir string
}

// maxJobLen keeps a runaway file from becoming a label ingest would reject (labels ≤ 256 bytes).
const maxJobLen = 200

// maxMappingBytes is how much of a mapping file is read: job ids are short, and a file that is not
// one (or grows without bound) must not be read whole on every sample.
const maxMappingBytes = 64 << 10

// boundJob makes a job name safe to send: valid UTF-8 (a proto string must be) and at most
// maxJobLen bytes, cut at a character boundary.
func boundJob(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for len(s) > maxJobLen {
		_, size := utf8.DecodeLastRuneInString(s[:maxJobLen+1])
		s = s[:maxJobLen+1-size]
	}
	return s
}

// Jobs returns the job id per GPU index.
func (m MappingDir) Jobs() (map[uint32]string, error) {
	entries, err := os.ReadDir(m.Dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return map[uint32]string{}, nil // no job has run yet
		}
		return nil, fmt.Errorf("job mapping dir: %w", err)
	}
	out := map[uint32]string{}
	for _, e := range entries {
		idx, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil || e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(m.Dir, e.Name()))
		if err != nil {
			continue // removed by an epilog between ReadDir and Open
		}
		// Read whole (bounded), not by bufio.Scanner: a line over the scanner's 64 KiB stopped it
		// silently, and the lines after it, or the whole file, were lost.
		b, _ := io.ReadAll(io.LimitReader(f, maxMappingBytes))
		f.Close()
		var jobs []string
		for _, l := range strings.Split(string(b), "\n") {
			if j := strings.TrimSpace(l); j != "" {
				jobs = append(jobs, j)
			}
		}
		if job := boundJob(strings.Join(jobs, ",")); job != "" {
			out[uint32(idx)] = job
		}
	}
	return out, nil
}
