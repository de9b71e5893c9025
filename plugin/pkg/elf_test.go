package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The release backend binaries (make plugin-backend: CGO_ENABLED=0, -tags nochdb) must start in
// any Grafana image, Alpine's musl on arm64 included: no program interpreter (PT_INTERP) and no
// shared library needed, for every platform Grafana servers run on.
func TestReleaseBinariesAreStatic(t *testing.T) {
	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		bin := filepath.Join(dir, "gpx_"+arch)
		cmd := exec.Command("go", "build", "-tags", "nochdb", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./plugin/pkg")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build for %s: %v\n%s", arch, err, out)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s: program header %v: the binary needs the dynamic loader", arch, p.Type)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s: needs shared libraries %v", arch, libs)
		}
		f.Close()
	}
}
