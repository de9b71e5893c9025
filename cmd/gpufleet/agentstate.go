package main

// Where the agent keeps its state (the spool, with the sequence numbers): a directory found
// without configuration, so that `gpufleet agent` loses nothing to a Kafka outage out of the box.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/gpufleet/gpufleet/agent/spool"
)

// systemStateDir is the agent's state directory when it may write there (root, or a directory
// made for the agent's user, as a package would).
const systemStateDir = "/var/lib/gpufleet"

// agentState are the agent's flags for its state; simulate has none (its spool is opt-in).
type agentState struct {
	registered bool
	dir        string
	noSpool    bool
	getenv     func(string) string
}

func (s *simFlags) registerState(f *flags) {
	s.state = agentState{registered: true, getenv: f.e.getenv}
	f.StringVar(&s.state.dir, "state-dir", "", "directory of the agent's state: the spool (<dir>/spool, with the sequence numbers).\n"+
		"Default "+systemStateDir+" where the agent may write (root, or made for its user), otherwise\n"+
		"$XDG_STATE_HOME/gpufleet, or ~/.local/state/gpufleet; one agent per directory")
	f.BoolVar(&s.state.noSpool, "no-spool", false, "run without the spool: while Kafka is unreachable sampling stops and waits for it,\n"+
		"and what a restart interrupts is lost")
}

// checkSpool refuses contradictory spool flags before anything is opened.
func (s *simFlags) checkSpool() error {
	if s.state.noSpool && s.spoolDir != "" {
		return usageError{errors.New("--no-spool and --spool-dir: give one or the other")}
	}
	if s.spoolMiB < 1 && !s.state.noSpool {
		return usageError{fmt.Errorf("--spool-mib %d: must be at least 1", s.spoolMiB)}
	}
	return nil
}

// openSpool opens the spool: --spool-dir, else (agent) <state dir>/spool; nil when there is none
// (simulate without --spool-dir, agent --no-spool).
func (s *simFlags) openSpool(log *slog.Logger) (*spool.Spool, error) {
	dir, setting := s.spoolDir, "--spool-dir"
	switch {
	case s.state.noSpool:
		log.Warn("--no-spool: while Kafka is unreachable sampling waits for it, and a restart loses what was not sent")
		return nil, nil
	case dir == "" && !s.state.registered:
		log.Warn("no --spool-dir: while Kafka is unreachable sampling waits for it instead of spooling to disk")
		return nil, nil
	case dir == "":
		state, err := s.state.resolve(systemStateDir)
		if err != nil {
			return nil, err
		}
		dir, setting = filepath.Join(state, "spool"), "--state-dir"
	}
	if err := s.checkSpool(); err != nil {
		return nil, err
	}
	sp, err := spool.Open(dir, spool.Options{MaxBytes: int64(s.spoolMiB) << 20, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	st := sp.Stats()
	log.Info("spool", slog.String("dir", dir), slog.Int("cap_mib", s.spoolMiB), slog.Uint64("batches_from_last_run", st.Batches))
	return sp, nil
}

// resolve returns --state-dir, or the default: system when this process may write there, else
// $XDG_STATE_HOME/gpufleet, else ~/.local/state/gpufleet.
func (a agentState) resolve(system string) (string, error) {
	if a.dir != "" {
		return a.dir, nil
	}
	if writableDir(system) {
		return system, nil
	}
	if x := a.getenv("XDG_STATE_HOME"); filepath.IsAbs(x) { // the XDG spec ignores a relative one
		return filepath.Join(x, "gpufleet"), nil
	}
	if h := a.getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "gpufleet"), nil
	}
	return "", usageError{fmt.Errorf("no state directory: %s is not writable and neither XDG_STATE_HOME nor HOME is set; give --state-dir (or --no-spool)", system)}
}

// writableDir makes dir if it can and reports whether a file can be created in it; permission
// bits alone do not say (a read-only mount, an ACL).
func writableDir(dir string) bool {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}
