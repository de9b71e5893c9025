package deploy_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// base is what an image's base provides a binary at run time: the program interpreter, the
// shared libraries, and the newest glibc symbol version (0 for none). The distroless lists are
// the Debian 12 packages those images are made of (libc6, and libssl3 for base): docs/images.md.
type base struct {
	interp  map[string]string // GOARCH → PT_INTERP path; empty: no loader in the image
	libs    []string
	glibcTo [2]int // newest GLIBC_x.y the base's libc defines
}

var bases = map[string]base{
	"gcr.io/distroless/static-debian12:nonroot": {},
	"gcr.io/distroless/base-debian12:nonroot": {
		interp: map[string]string{"amd64": "/lib64/ld-linux-x86-64.so.2", "arm64": "/lib/ld-linux-aarch64.so.1"},
		libs: []string{"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "libresolv.so.2",
			"libssl.so.3", "libcrypto.so.3"},
		glibcTo: [2]int{2, 36}, // Debian 12's glibc
	},
}

// stage is one FROM of the Dockerfile: its image, name and RUN commands (continuations joined).
type stage struct {
	from, name string
	env        []string // ENV key=value
	runs       []string
	copyFrom   string // the stage a COPY --from takes the binary from
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	cur := ""
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		if l = cur + l; strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimSpace(l))
		}
		cur = ""
	}
	var st []stage
	for _, l := range lines {
		word, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			f := strings.Fields(rest)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			st = append(st, s)
		case "ENV":
			st[len(st)-1].env = append(st[len(st)-1].env, strings.ReplaceAll(rest, `"`, ""))
		case "RUN":
			st[len(st)-1].runs = append(st[len(st)-1].runs, rest)
		case "COPY":
			if m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(rest); m != nil {
				st[len(st)-1].copyFrom = m[1]
			}
		}
	}
	return st
}

// goBuild is the part of a RUN line from the environment assignments before `go build` to its
// end, with the cache mounts dropped.
var goBuild = regexp.MustCompile(`((?:[A-Z_]+=(?:"[^"]*"|\S+)\s+)*go build .*)$`)

// Each image's binary, built with its Dockerfile stage's own go build line, starts on the image's
// base: the interpreter it asks for is there, every library it needs is there, no glibc symbol is
// newer than the base's, and NVML is loaded at run time rather than linked. The server builds for
// every platform the images are made for; the agent's cgo build for those this machine has a C
// cross compiler for (it is built on the target platform in the Dockerfile).
func TestImagesStartOnTheirBase(t *testing.T) {
	stages := parseDockerfile(t, "../Dockerfile")
	byName := map[string]stage{}
	for _, s := range stages {
		byName[s.name] = s
	}
	for _, target := range []string{"server", "agent"} {
		final, ok := byName[target]
		if !ok {
			t.Fatalf("the Dockerfile has no %s stage", target)
		}
		b, ok := bases[final.from]
		if !ok {
			t.Fatalf("%s: base %s is not one this test knows what it provides (add it to bases, with docs/images.md)", target, final.from)
		}
		build, ok := byName[final.copyFrom]
		if !ok {
			t.Fatalf("%s copies from stage %q, which the Dockerfile does not have", target, final.copyFrom)
		}
		var line string
		for _, r := range build.runs {
			if m := goBuild.FindStringSubmatch(r); m != nil {
				line = m[1]
			}
		}
		if line == "" {
			t.Fatalf("stage %s has no go build line", build.name)
		}
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(target+"/"+arch, func(t *testing.T) {
				cgo := strings.Contains(line, "CGO_ENABLED=1")
				cc := ""
				if cgo && arch != hostArch(t) {
					cc = crossCC[arch]
					if _, err := exec.LookPath(cc); err != nil {
						t.Skipf("no %s on this machine for the agent's cgo build for %s (the Dockerfile builds it on that platform)", cc, arch)
					}
				}
				bin := filepath.Join(t.TempDir(), "gpufleet")
				cmd := exec.Command("bash", "-c", strings.ReplaceAll(line, "/out/gpufleet", bin))
				cmd.Dir = ".."
				cmd.Env = append(os.Environ(), build.env...)
				cmd.Env = append(cmd.Env, "TARGETOS=linux", "TARGETARCH="+arch, "GOOS=linux", "GOARCH="+arch)
				if cc != "" {
					cmd.Env = append(cmd.Env, "CC="+cc)
				}
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: %v\n%s", line, err, tail(out))
				}
				checkELF(t, bin, arch, b)
			})
		}
	}
}

var crossCC = map[string]string{"amd64": "x86_64-linux-gnu-gcc", "arm64": "aarch64-linux-gnu-gcc"}

func hostArch(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOHOSTARCH").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

func checkELF(t *testing.T, bin, arch string, b base) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != wantMachine {
		t.Errorf("built for %v, want %v", f.Machine, wantMachine)
	}
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			data := make([]byte, p.Filesz)
			if _, err := p.ReadAt(data, 0); err != nil {
				t.Fatal(err)
			}
			interp = strings.TrimRight(string(data), "\x00")
		}
	}
	if want := b.interp[arch]; interp != "" && interp != want {
		if want == "" {
			t.Errorf("needs the program interpreter %s; the base has no dynamic loader", interp)
		} else {
			t.Errorf("needs the program interpreter %s; the base has %s", interp, want)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range libs {
		if strings.Contains(l, "nvidia-ml") {
			t.Errorf("links %s: NVML must be loaded at run time (the container toolkit injects it)", l)
		} else if !slices.Contains(b.libs, l) {
			t.Errorf("needs %s, which the base does not provide (it has %v)", l, b.libs)
		}
	}
	syms, _ := f.ImportedSymbols() // none in a static binary
	newest := [2]int{}
	for _, s := range syms {
		if v, ok := glibcVersion(s.Version); ok && (v[0] > newest[0] || v[0] == newest[0] && v[1] > newest[1]) {
			newest = v
		}
	}
	if newest[0] > b.glibcTo[0] || newest[0] == b.glibcTo[0] && newest[1] > b.glibcTo[1] {
		t.Errorf("needs GLIBC_%d.%d; the base's glibc is %d.%d", newest[0], newest[1], b.glibcTo[0], b.glibcTo[1])
	}
	t.Logf("interpreter %q, libraries %v, newest glibc symbol %d.%d", interp, libs, newest[0], newest[1])
}

func glibcVersion(v string) ([2]int, bool) {
	rest, ok := strings.CutPrefix(v, "GLIBC_")
	if !ok {
		return [2]int{}, false
	}
	maj, min, _ := strings.Cut(rest, ".")
	min, _, _ = strings.Cut(min, ".")
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(min)
	return [2]int{a, b}, err1 == nil && err2 == nil
}
