package main

// The --config file (docs/config.md), --print-config, and the check for GPUFLEET_* variables no
// command reads.
//
// The file is YAML. Its keys are flag names. A key whose value is a mapping is a section for the
// command of that name (ingest:, agent:, ...), so that one file serves every daemon on a host: a
// command reads the top-level keys and its own section, which wins over them, and skips the other
// commands' sections. Every key it reads must be one of its flags: a misspelt or misplaced key
// stops it (exit 2) naming the key and its line, rather than being ignored.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v4"

	dsnredact "github.com/gpufleet/gpufleet/internal/store/backend/redact"
)

// errPrinted ends a command after --print-config; errCollected one run for knownFlags. Both wrap
// flag.ErrHelp: Run exits 0 on them, as on --help.
var (
	errPrinted   = fmt.Errorf("configuration printed: %w", flag.ErrHelp)
	errCollected = fmt.Errorf("flags collected: %w", flag.ErrHelp)
)

// commandNames are every command of the full binary, the agent-only build's included: a section
// for a command this build lacks (ingest: in an agent's file) is another daemon's, not a typo.
var commandNames = []string{"agent", "simulate", "topics", "nvml-probe", "version", "healthcheck",
	"ingest", "migrate", "query", "api", "demo"}

// fileOnlyNot are the flags a config file cannot set: they choose the file and what to do with it.
var fileOnlyNot = []string{"config", "print-config"}

// knownFlags maps every flag of this binary's commands to the commands that have it, learnt by
// letting each command register its flags (parse stops it there, see env.collect).
func knownFlags() map[string][]string {
	knownOnce.Do(func() { known = collectFlags() })
	return known
}

var (
	knownOnce sync.Once
	known     map[string][]string
)

func collectFlags() map[string][]string {
	known := map[string][]string{}
	ce := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	ce.collect = func(cmd string, fs *flag.FlagSet) {
		fs.VisitAll(func(fl *flag.Flag) { known[fl.Name] = append(known[fl.Name], cmd) })
	}
	for _, c := range commands() {
		if c.name == "version" || c.name == "healthcheck" {
			continue // no flags of newFlags', and running them does the work
		}
		_ = c.run(context.Background(), ce, nil) // parse returns before anything uses ctx
	}
	return known
}

// loadConfig sets every flag not given on the command line or by the environment from the file
// --config (or GPUFLEET_CONFIG) names.
func (f *flags) loadConfig() error {
	path := f.configPath
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return usageError{fmt.Errorf("--config: %w", err)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return usageError{fmt.Errorf("--config %s: %w", path, err)}
	}
	if len(doc.Content) == 0 {
		return nil // empty, or comments only
	}
	top := deref(doc.Content[0])
	if top.Kind != yaml.MappingNode {
		return usageError{fmt.Errorf("%s:%d: want a mapping of flag names to values (batch-rows: 100000), or of command names to such mappings", path, top.Line)}
	}
	flat, err := f.entries(path, top, true)
	if err != nil {
		return err
	}
	// The command's own section wins over the top level: it is the more specific.
	for _, kv := range pairs(top) {
		if deref(kv[1]).Kind == yaml.MappingNode && kv[0].Value == f.name {
			own, err := f.entries(path, deref(kv[1]), false)
			if err != nil {
				return err
			}
			for k, v := range own {
				flat[k] = v
			}
		}
	}
	names := make([]string, 0, len(flat))
	for k := range flat {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		if f.given[name] {
			continue // the command line and the environment beat the file
		}
		v := flat[name]
		if err := f.Set(name, v.Value); err != nil {
			shown := strconv.Quote(v.Value)
			if secretFlag(name) {
				shown = "(redacted)"
			}
			return usageError{fmt.Errorf("%s:%d: %s: invalid value %s (--%s): %s", path, v.Line, name, shown, name, wantFor(f.Lookup(name), err))}
		}
		f.given[name], f.source[name] = true, fmt.Sprintf("file %s:%d", path, v.Line)
	}
	return nil
}

// wantFor says what a flag takes, where package flag's error says only "parse error".
func wantFor(fl *flag.Flag, err error) string {
	g, ok := fl.Value.(flag.Getter)
	if !ok {
		return err.Error()
	}
	switch g.Get().(type) {
	case bool:
		return "want true or false"
	case time.Duration:
		return "want a duration such as 500ms, 30s or 1h"
	case int, int64:
		return "want an integer"
	case uint, uint64:
		return "want a non-negative integer"
	case float64:
		return "want a number"
	}
	return err.Error()
}

// entries checks one mapping's keys (the top level's, or the command's section's) and returns its
// flag values by flag name. Sections are read only at the top level.
func (f *flags) entries(path string, m *yaml.Node, top bool) (map[string]*yaml.Node, error) {
	out := map[string]*yaml.Node{}
	seen := map[string]int{}
	for _, kv := range pairs(m) {
		k, v := kv[0], deref(kv[1])
		if k.Kind != yaml.ScalarNode {
			return nil, usageError{fmt.Errorf("%s:%d: a key must be a flag name", path, k.Line)}
		}
		key := k.Value
		if line, dup := seen[key]; dup {
			return nil, usageError{fmt.Errorf("%s:%d: %s: set twice (first at line %d)", path, k.Line, key, line)}
		}
		seen[key] = k.Line
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" && top && slices.Contains(commandNames, key) {
			continue // an empty section ("agent:" with nothing under it yet)
		}
		if v.Kind == yaml.MappingNode {
			switch {
			case !top:
				return nil, usageError{fmt.Errorf("%s:%d: %s: a section's values are flags' values, not mappings", path, k.Line, key)}
			case slices.Contains(commandNames, key):
				continue // a command's section: its own is read by loadConfig, the others by their commands
			case f.Lookup(key) != nil:
				return nil, usageError{fmt.Errorf("%s:%d: %s: give the flag a value, not a mapping", path, k.Line, key)}
			}
			return nil, usageError{fmt.Errorf("%s:%d: unknown key %q: not a command's section (%s) nor a flag of gpufleet %s",
				path, k.Line, key, strings.Join(commandNames, ", "), f.name)}
		}
		if slices.Contains(fileOnlyNot, key) {
			return nil, usageError{fmt.Errorf("%s:%d: %s cannot be set in a config file", path, k.Line, key)}
		}
		if f.Lookup(key) == nil {
			return nil, usageError{fmt.Errorf("%s:%d: unknown key %q: %s", path, k.Line, key, f.notAFlag(key, top))}
		}
		switch {
		case v.Kind != yaml.ScalarNode:
			return nil, usageError{fmt.Errorf("%s:%d: %s: want a single value (a list of brokers is one comma-separated string)", path, v.Line, key)}
		case v.ShortTag() == "!!null":
			return nil, usageError{fmt.Errorf(`%s:%d: %s: no value (write "" for an empty one)`, path, v.Line, key)}
		}
		out[key] = v
	}
	return out, nil
}

// notAFlag says why key is refused, and where it belongs when another command has that flag.
func (f *flags) notAFlag(key string, top bool) string {
	msg := fmt.Sprintf("gpufleet %s has no --%s", f.name, key)
	others := knownFlags()[key]
	if len(others) == 0 {
		return msg
	}
	where := "a section of its own"
	if top {
		where = "a section (" + others[0] + ":)"
	}
	return fmt.Sprintf("%s; it is a flag of %s: put it in %s", msg, strings.Join(others, ", "), where)
}

// pairs are a mapping node's key/value pairs.
func pairs(m *yaml.Node) [][2]*yaml.Node {
	var out [][2]*yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, [2]*yaml.Node{m.Content[i], m.Content[i+1]})
	}
	return out
}

// deref follows a YAML alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// dsnFlags hold a DSN, whose password and secret-like parameters redact.DSN masks;
// dsnListFlags hold several, separated by spaces.
var (
	dsnFlags     = []string{"clickhouse"}
	dsnListFlags = []string{"shards"}
)

// redactDSNs is a space-separated list of DSNs with each one's secrets masked.
func redactDSNs(v string) string {
	parts := strings.Fields(v)
	for i, p := range parts {
		parts[i] = dsnredact.DSN(p)
	}
	return strings.Join(parts, " ")
}

// secretFlag reports whether the flag's value is a secret: a token or password itself, not the
// path of a file holding one (--api-token-file, --kafka-sasl-password-file).
func secretFlag(name string) bool {
	if strings.HasSuffix(name, "-file") {
		return false
	}
	for _, w := range []string{"token", "password", "secret", "credential"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// redacted is a flag's value as --print-config shows it.
func redacted(name, v string) string {
	switch {
	case v == "":
		return v
	case slices.Contains(dsnFlags, name):
		return dsnredact.DSN(v)
	case slices.Contains(dsnListFlags, name):
		return redactDSNs(v)
	case secretFlag(name):
		return "(redacted)"
	}
	return v
}

// writeConfig prints every flag as a config file would set it, values quoted and secrets
// redacted, with where its value came from: the output, less the redacted values, can be the file.
func (f *flags) writeConfig(w io.Writer) {
	fmt.Fprintf(w, "# gpufleet %s: the effective configuration (secrets redacted)\n", f.name)
	if f.configPath != "" {
		fmt.Fprintf(w, "# config file %s (from %s)\n", f.configPath, f.sourceOf("config"))
	}
	type line struct{ kv, src string }
	var lines []line
	width := 0
	f.VisitAll(func(fl *flag.Flag) {
		if slices.Contains(fileOnlyNot, fl.Name) {
			return
		}
		l := line{fl.Name + ": " + strconv.Quote(redacted(fl.Name, fl.Value.String())), f.sourceOf(fl.Name)}
		width = max(width, len(l.kv))
		lines = append(lines, l)
	})
	for _, l := range lines {
		fmt.Fprintf(w, "%-*s  # %s\n", width, l.kv, l.src)
	}
	// The SASL password has no flag (a flag's value shows in ps): say whether it is set, never what.
	if f.Lookup("kafka-sasl-password-file") != nil {
		state := "unset"
		if f.e.getenv(passwordEnv) != "" {
			state = "set (redacted)"
		}
		fmt.Fprintf(w, "# %s: %s\n", passwordEnv, state)
	}
}

func (f *flags) sourceOf(name string) string {
	if s, ok := f.source[name]; ok {
		return s
	}
	return "default"
}

var flagRef = regexp.MustCompile(`--([a-z][a-z0-9-]*)`)

// origins is what a usage error adds when it names a flag whose value came from the environment or
// the config file: the message names the flag, and the user looks for it on the command line.
func (f *flags) origins(msg string) string {
	var out []string
	seen := map[string]bool{}
	for _, m := range flagRef.FindAllStringSubmatch(msg, -1) {
		name := m[1]
		src, ok := f.source[name]
		if seen[name] || !ok || src == "flag" {
			continue
		}
		seen[name] = true
		where, _ := strings.CutPrefix(src, "env ")
		where, _ = strings.CutPrefix(where, "file ")
		if strings.Contains(msg, where) {
			continue // the message says already
		}
		out = append(out, fmt.Sprintf("--%s from %s", name, src))
	}
	if len(out) == 0 {
		return ""
	}
	return " [" + strings.Join(out, "; ") + "]"
}

// otherEnv are the GPUFLEET_ variables that are no flag's: the SASL password, and those of the
// repository's scripts, tests and compose file (deploy/dev, testenv, benchmarks, .env), which a
// developer's shell may hold.
var (
	otherEnv       = []string{passwordEnv, "GPUFLEET_CACHE"}
	otherEnvPrefix = []string{"GPUFLEET_TEST_", "GPUFLEET_BENCH_", "GPUFLEET_CHAOS_",
		"GPUFLEET_CH_"} // docker-compose.yml's ClickHouse passwords, from .env
)

// unknownEnv are the GPUFLEET_ variables set that no command of this binary reads: most likely
// typos, whose setting would otherwise be silently lost. A variable another command reads is
// fine: one environment may serve several commands.
func (f *flags) unknownEnv() []string {
	if f.e.environ == nil {
		return nil
	}
	known := knownFlags()
	var unknown []string
	for _, kv := range f.e.environ() {
		name, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, "GPUFLEET_")
		if !ok || slices.Contains(otherEnv, name) || slices.ContainsFunc(otherEnvPrefix, func(p string) bool { return strings.HasPrefix(name, p) }) {
			continue
		}
		if _, ok := known[strings.ToLower(strings.ReplaceAll(rest, "_", "-"))]; ok && name == strings.ToUpper(name) {
			continue
		}
		unknown = append(unknown, name)
	}
	sort.Strings(unknown)
	return unknown
}

// warnUnknownEnv logs unknownEnv at start-up, once.
func (f *flags) warnUnknownEnv() {
	unknown := f.unknownEnv()
	if len(unknown) == 0 {
		return
	}
	log, err := f.logger()
	if err != nil {
		return // the command reports the bad --log-level itself
	}
	msg := "no gpufleet command reads these variables (a typo?); they are ignored"
	if len(serverCommands()) == 0 {
		msg = "no command of this agent-only build reads these variables (a typo, or meant for the full gpufleet?); they are ignored"
	}
	log.Warn(msg, slog.String("vars", strings.Join(unknown, ",")))
}
