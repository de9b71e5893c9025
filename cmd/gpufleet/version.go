package main

// `gpufleet version`: what the binary was built from, read from the build information the Go
// toolchain embeds (runtime/debug.ReadBuildInfo), so that it needs no -ldflags to be right.

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildVersion and buildCommit, when set at link time (-ldflags "-X main.buildVersion=v1.2.0
// -X main.buildCommit=$(git rev-parse HEAD)"), win over the build information: a build with
// -buildvcs=false (the Makefile's) or from a source tarball records no commit.
var buildVersion, buildCommit string

func runVersion(_ context.Context, e *env, args []string) error {
	if len(args) > 0 {
		if args[0] == "--help" || args[0] == "-h" || args[0] == "-help" {
			fmt.Fprint(e.stdout, "Usage: gpufleet version\n\nPrints the version, commit and Go version this binary was built from, and the versions\n"+
				"of the libraries it loads at run time where it knows them without loading them.\n")
			return nil
		}
		return usageError{fmt.Errorf("unexpected argument %q", args[0])}
	}
	bi, ok := debug.ReadBuildInfo()
	writeVersion(e.stdout, bi, ok)
	return nil
}

// writeVersion prints one "name  value" line per fact; a fact the build does not record is
// "unknown" (a build outside a git checkout, or with -buildvcs=false, has no commit).
func writeVersion(w io.Writer, bi *debug.BuildInfo, ok bool) {
	version, commit, when, modified, nvml := "unknown", "unknown", "unknown", "", "unknown"
	if ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (with uncommitted changes)"
				}
			}
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/NVIDIA/go-nvml" {
				nvml = d.Version
			}
		}
	}
	if buildVersion != "" {
		version = buildVersion
	}
	if buildCommit != "" {
		commit = buildCommit
	}
	build := "full"
	chdb := "not loaded (libchdb.so is opened by the commands that use chdb://)"
	if len(serverCommands()) == 0 {
		build, chdb = "agent-only (-tags agentonly)", "not in this build"
	}
	fmt.Fprintf(w, "gpufleet     %s\n", version)
	fmt.Fprintf(w, "commit       %s%s\n", commit, modified)
	fmt.Fprintf(w, "commit time  %s\n", when)
	fmt.Fprintf(w, "go           %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "build        %s\n", build)
	// The driver's NVML is loaded only to sample: initialising it can take seconds on a large node.
	fmt.Fprintf(w, "nvml         go-nvml %s; driver not loaded (the agent reads it at start-up)\n", nvml)
	fmt.Fprintf(w, "chdb         %s\n", chdb)
}
