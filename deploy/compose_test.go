package deploy_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is where docker-compose.yml and the Dockerfile live, relative to this package.
const repoRoot = ".."

// loadProject parses the compose file with compose-go's own loader (schema validation,
// normalization, consistency checks) as `docker compose --profile '*'` would with .env.example as
// the .env: every profile's services, and no variable from the machine running the test.
func loadProject(t *testing.T) *types.Project {
	t.Helper()
	p, err := loadCompose(t, filepath.Join(repoRoot, ".env.example"))
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

// loadCompose loads docker-compose.yml with envFile as its only environment ("" for none).
func loadCompose(t *testing.T, envFile string) (*types.Project, error) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	opts := []cli.ProjectOptionsFn{
		cli.WithName("gpufleet-test"),
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
	}
	if envFile != "" {
		abs, err := filepath.Abs(envFile)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, cli.WithEnvFiles(abs), cli.WithDotEnv)
	}
	opts = append(opts, cli.WithProfiles([]string{"*"}))
	o, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")}, opts...)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	return o.LoadProject(context.Background())
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	svc, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %q: %v", name, err)
	}
	return svc
}

func env(svc types.ServiceConfig, key string) (string, bool) {
	v, ok := svc.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func TestComposeServicesExist(t *testing.T) {
	p := loadProject(t)
	for _, name := range []string{"kafka", "clickhouse", "topics", "migrate", "ingest", "simulate", "api", "prometheus", "grafana"} {
		if _, err := p.GetService(name); err != nil {
			t.Errorf("service %q missing (have %v)", name, p.ServiceNames())
		}
	}
}

func TestComposeGpufleetServices(t *testing.T) {
	p := loadProject(t)
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		service    string
		subcommand string
		restart    string
		dependsOn  map[string]string // service -> condition
		wantEnv    []string
	}{
		{
			service:    "migrate",
			subcommand: "migrate",
			restart:    types.RestartPolicyNo,
			dependsOn:  map[string]string{"clickhouse": types.ServiceConditionHealthy},
			wantEnv:    []string{"GPUFLEET_CLICKHOUSE"},
		},
		{
			// Agents and ingest only check that the topics exist: this one-shot creates them.
			service:    "topics",
			subcommand: "topics",
			restart:    types.RestartPolicyNo,
			dependsOn:  map[string]string{"kafka": types.ServiceConditionHealthy},
			wantEnv:    []string{"GPUFLEET_BROKERS"},
		},
		{
			service:    "ingest",
			subcommand: "ingest",
			restart:    types.RestartPolicyUnlessStopped,
			dependsOn: map[string]string{
				"kafka":   types.ServiceConditionHealthy,
				"topics":  types.ServiceConditionCompletedSuccessfully,
				"migrate": types.ServiceConditionCompletedSuccessfully,
			},
			wantEnv: []string{"GPUFLEET_BROKERS", "GPUFLEET_CLICKHOUSE", "GPUFLEET_METRICS_ADDR"},
		},
		{
			service:    "api",
			subcommand: "api",
			restart:    types.RestartPolicyUnlessStopped,
			dependsOn:  map[string]string{"migrate": types.ServiceConditionCompletedSuccessfully},
			wantEnv:    []string{"GPUFLEET_CLICKHOUSE", "GPUFLEET_HTTP"},
		},
		{
			service:    "simulate",
			subcommand: "simulate",
			restart:    types.RestartPolicyUnlessStopped,
			dependsOn: map[string]string{
				"kafka":  types.ServiceConditionHealthy,
				"topics": types.ServiceConditionCompletedSuccessfully,
			},
			wantEnv: []string{"GPUFLEET_BROKERS", "GPUFLEET_GPUS", "GPUFLEET_INTERVAL", "GPUFLEET_METRICS_ADDR"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			svc := service(t, p, tc.service)

			if svc.Build == nil {
				t.Fatalf("%s: no build section", tc.service)
			}
			ctxDir := svc.Build.Context
			if !filepath.IsAbs(ctxDir) {
				ctxDir = filepath.Join(p.WorkingDir, ctxDir)
			}
			if filepath.Clean(ctxDir) != root {
				t.Errorf("%s: build context %q, want the repo root %q", tc.service, svc.Build.Context, root)
			}
			if df := svc.Build.Dockerfile; df != "" && filepath.Base(df) != "Dockerfile" {
				t.Errorf("%s: dockerfile %q, want the root Dockerfile", tc.service, df)
			}

			if len(svc.Command) == 0 || svc.Command[0] != tc.subcommand {
				t.Errorf("%s: command %q, want subcommand %q first", tc.service, []string(svc.Command), tc.subcommand)
			}
			if svc.Entrypoint != nil {
				t.Errorf("%s: entrypoint %q overrides the image's /gpufleet", tc.service, []string(svc.Entrypoint))
			}
			if svc.Restart != tc.restart {
				t.Errorf("%s: restart %q, want %q", tc.service, svc.Restart, tc.restart)
			}

			for dep, cond := range tc.dependsOn {
				got, ok := svc.DependsOn[dep]
				if !ok {
					t.Errorf("%s: does not depend on %s", tc.service, dep)
					continue
				}
				if got.Condition != cond {
					t.Errorf("%s: depends_on %s condition %q, want %q", tc.service, dep, got.Condition, cond)
				}
			}
			for _, key := range tc.wantEnv {
				if v, ok := env(svc, key); !ok || v == "" {
					t.Errorf("%s: environment %s not set", tc.service, key)
				}
			}
		})
	}
}

// gpufleet binds 127.0.0.1 by default, which a published port cannot reach in a container: every
// port a gpufleet service publishes must be one it was told to listen on, on every interface, and
// the host side stays on 127.0.0.1.
func TestComposePublishedPortsAreListenedOn(t *testing.T) {
	p := loadProject(t)
	// The settings that name a listen address, as flags' environment variables.
	listenVars := []string{"GPUFLEET_METRICS_ADDR", "GPUFLEET_HTTP"}
	published := 0
	for _, name := range p.ServiceNames() {
		svc := service(t, p, name)
		if svc.Build == nil { // not a gpufleet image
			continue
		}
		listening := map[string]bool{}
		for _, key := range listenVars {
			v, ok := env(svc, key)
			if !ok || v == "" {
				continue
			}
			host, port, err := net.SplitHostPort(v)
			switch {
			case err != nil:
				t.Errorf("%s: %s %q is not host:port: %v", name, key, v, err)
			case host != "0.0.0.0" && host != "" && host != "::":
				t.Errorf("%s: %s %q listens on %s only: a published port cannot reach it", name, key, v, host)
			default:
				listening[port] = true
			}
		}
		for _, pc := range svc.Ports {
			published++
			if pc.HostIP != "127.0.0.1" {
				t.Errorf("%s: port %d published on %q, want 127.0.0.1", name, pc.Target, pc.HostIP)
			}
			if !listening[strconv.Itoa(int(pc.Target))] {
				t.Errorf("%s: publishes port %d but sets none of %v to 0.0.0.0:%d: gpufleet would listen on 127.0.0.1 inside the container",
					name, pc.Target, listenVars, pc.Target)
			}
		}
	}
	if published < 3 {
		t.Errorf("%d published gpufleet ports, want ingest's, simulate's and the API's", published)
	}
}

// Every long-running service has a healthcheck; gpufleet's GET the daemon's own /healthz with the
// gpufleet binary (the image is distroless: no shell, curl or wget), on the port it listens on.
func TestComposeHealthchecks(t *testing.T) {
	p := loadProject(t)
	tests := []struct {
		service  string
		wantTest string // substring of the joined healthcheck command
	}{
		{"kafka", "kafka-broker-api-versions.sh"},
		{"clickhouse", "SELECT 1"},
		{"grafana", "/api/health"},
		{"prometheus", "/-/ready"},
		{"ingest", "/gpufleet healthcheck http://127.0.0.1:9401/healthz"},
		{"simulate", "/gpufleet healthcheck http://127.0.0.1:9402/healthz"},
		{"api", "/gpufleet healthcheck http://127.0.0.1:8081/healthz"},
	}
	want := map[string]string{}
	for _, tc := range tests {
		want[tc.service] = tc.wantTest
	}
	for _, name := range p.ServiceNames() {
		svc := service(t, p, name)
		if svc.Restart == types.RestartPolicyNo {
			continue // one-shot: done is its health
		}
		if _, ok := want[name]; !ok {
			t.Errorf("%s: long-running (restart %q) but this test has no healthcheck for it", name, svc.Restart)
		}
	}
	for _, tc := range tests {
		t.Run(tc.service, func(t *testing.T) {
			svc := service(t, p, tc.service)
			hc := svc.HealthCheck
			if hc == nil || hc.Disable || len(hc.Test) == 0 {
				t.Fatalf("%s: no healthcheck", tc.service)
			}
			if hc.Test[0] == "NONE" {
				t.Fatalf("%s: healthcheck disabled", tc.service)
			}
			if joined := strings.Join(hc.Test, " "); !strings.Contains(joined, tc.wantTest) {
				t.Errorf("%s: healthcheck %q does not run %q", tc.service, hc.Test, tc.wantTest)
			}
			if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil {
				t.Errorf("%s: healthcheck without interval, timeout and retries: %+v", tc.service, hc)
			}
			if svc.Build == nil {
				return
			}
			// The probe must reach the listener the service was told to open.
			if hc.Test[0] != "CMD" || len(hc.Test) < 2 || hc.Test[1] != "/gpufleet" {
				t.Errorf("%s: healthcheck %q: in the distroless image only [CMD, /gpufleet, …] can run", tc.service, hc.Test)
			}
			u, err := url.Parse(hc.Test[len(hc.Test)-1])
			if err != nil {
				t.Fatalf("%s: healthcheck URL: %v", tc.service, err)
			}
			var ports []string
			for _, key := range []string{"GPUFLEET_METRICS_ADDR", "GPUFLEET_HTTP"} {
				if v, ok := env(svc, key); ok {
					_, port, _ := net.SplitHostPort(v)
					ports = append(ports, port)
				}
			}
			if u.Path != "/healthz" || !slices.Contains(ports, u.Port()) {
				t.Errorf("%s: healthcheck GETs %s, want /healthz on one of its listen ports %v", tc.service, u, ports)
			}
		})
	}
}

// Every credential comes from the one .env: with no environment the stack refuses to load (no
// default password to forget), and with .env.example each secret is that file's value.
func TestComposeCredentialsFromEnvFile(t *testing.T) {
	if _, err := loadCompose(t, ""); err == nil {
		t.Error("docker-compose.yml loads with no .env: some credential has a default")
	}
	envFile := readEnvFile(t, filepath.Join(repoRoot, ".env.example"))
	for _, key := range []string{"GPUFLEET_CH_MIGRATE_PASSWORD", "GPUFLEET_CH_INGEST_PASSWORD", "GPUFLEET_CH_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} {
		v := envFile[key]
		if v == "" {
			t.Errorf(".env.example: %s not set", key)
			continue
		}
		// Each variable alone missing must stop the load: every use of it is required.
		without := filepath.Join(t.TempDir(), "env")
		var lines []string
		for k, val := range envFile {
			if k != key {
				lines = append(lines, k+"="+val)
			}
		}
		if err := os.WriteFile(without, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadCompose(t, without); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("docker-compose.yml without %s: loads or fails for another reason (%v)", key, err)
		}
	}

	p := loadProject(t)
	grafana := service(t, p, "grafana")
	if v, _ := env(grafana, "GF_SECURITY_ADMIN_PASSWORD"); v != envFile["GRAFANA_ADMIN_PASSWORD"] {
		t.Errorf("grafana: GF_SECURITY_ADMIN_PASSWORD %q, want GRAFANA_ADMIN_PASSWORD from .env", v)
	}
	// No secret is written in the compose file itself.
	raw, err := os.ReadFile(filepath.Join(repoRoot, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"GPUFLEET_CH_MIGRATE_PASSWORD", "GPUFLEET_CH_INGEST_PASSWORD", "GPUFLEET_CH_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} {
		if strings.Contains(string(raw), envFile[key]) {
			t.Errorf("docker-compose.yml contains .env.example's %s value itself", key)
		}
	}
	if strings.Contains(string(raw), "gpufleet:gpufleet@") {
		t.Error("docker-compose.yml still has the shared gpufleet:gpufleet account")
	}
	// .env holds the real secrets: git must not take it.
	gi, err := os.ReadFile(filepath.Join(repoRoot, ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(strings.Split(string(gi), "\n"), func(l string) bool { return l == ".env" || l == "/.env" }) {
		t.Error(".gitignore does not ignore .env")
	}
}

// readEnvFile reads KEY=VALUE lines (compose's .env syntax, without quotes or expansion).
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=VALUE", path, line)
		}
		out[k] = v
	}
	return out
}

// ClickHouse's users come from deploy/clickhouse/users.d, one per job, and each gpufleet service
// logs in as its job's user with that user's password.
func TestComposeClickHouseUsers(t *testing.T) {
	p := loadProject(t)
	ch := service(t, p, "clickhouse")
	root, _ := filepath.Abs(repoRoot)

	const target = "/etc/clickhouse-server/users.d/gpufleet.xml"
	mounted := false
	for _, v := range ch.Volumes {
		if v.Target == target {
			mounted = true
			if filepath.Clean(v.Source) != filepath.Join(root, "deploy", filepath.FromSlash(usersXML)) || !v.ReadOnly {
				t.Errorf("clickhouse: %s from %q (read-only %v), want deploy/%s read-only", target, v.Source, v.ReadOnly, usersXML)
			}
		}
	}
	if !mounted {
		t.Errorf("clickhouse: %s not mounted", target)
	}
	// The image's entrypoint would otherwise make an all-powerful user of its own.
	if v, _ := env(ch, "CLICKHOUSE_SKIP_USER_SETUP"); v != "1" {
		t.Errorf("clickhouse: CLICKHOUSE_SKIP_USER_SETUP %q, want 1", v)
	}
	for _, key := range []string{"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", "CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"} {
		if _, ok := env(ch, key); ok {
			t.Errorf("clickhouse: %s set: the users are the users.d file's", key)
		}
	}

	users := readUsersXML(t)
	if d, ok := users.Users["default"]; !ok || !d.Removed {
		t.Error("users.d: the passwordless default user is not removed")
	}
	password := map[string]string{} // user -> the password the server gives it
	for name, u := range users.Users {
		if u.Removed {
			continue
		}
		v, ok := env(ch, u.PasswordEnv)
		if u.PasswordEnv == "" || !ok || v == "" {
			t.Errorf("users.d: %s's password from_env %q is not set on the clickhouse service", name, u.PasswordEnv)
		}
		password[name] = v
	}

	for svcName, user := range map[string]string{"migrate": "gpufleet_migrate", "ingest": "gpufleet_ingest", "api": "gpufleet_reader"} {
		svc := service(t, p, svcName)
		dsn, _ := env(svc, "GPUFLEET_CLICKHOUSE")
		u, err := url.Parse(dsn)
		if err != nil || u.User == nil {
			t.Errorf("%s: GPUFLEET_CLICKHOUSE %q has no user (%v)", svcName, dsn, err)
			continue
		}
		pw, _ := u.User.Password()
		if u.User.Username() != user || pw == "" || pw != password[user] {
			t.Errorf("%s: logs in as %q with the password of %q, want %s with its users.d password", svcName, u.User.Username(), pw, user)
		}
	}
	// The healthcheck logs in as a user the file defines (the image's default user is gone).
	if hc := ch.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "--user gpufleet_reader") {
		t.Errorf("clickhouse: healthcheck %+v does not log in as gpufleet_reader", hc)
	}
	// Grafana's datasource reads as the reader, with the reader's password.
	if v, _ := env(service(t, p, "grafana"), "GPUFLEET_CH_READER_PASSWORD"); v == "" || v != password["gpufleet_reader"] {
		t.Errorf("grafana: GPUFLEET_CH_READER_PASSWORD %q, want gpufleet_reader's password", v)
	}
}

// Images are pinned to a release (x.y.z or longer), never :latest or a bare name; a digest, when
// given, is a full sha256.
func TestComposeImagesPinned(t *testing.T) {
	p := loadProject(t)
	images := 0
	for _, name := range p.ServiceNames() {
		svc := service(t, p, name)
		if svc.Image == "" {
			continue
		}
		images++
		ref, digest, hasDigest := strings.Cut(svc.Image, "@")
		slash := strings.LastIndex(ref, "/")
		colon := strings.LastIndex(ref, ":")
		tag := ""
		if colon > slash {
			tag = ref[colon+1:]
		}
		if parts := strings.Split(strings.SplitN(tag, "-", 2)[0], "."); tag == "latest" || len(parts) < 3 {
			t.Errorf("%s: image %q is not pinned to a release tag x.y.z", name, svc.Image)
		}
		if hasDigest && (!strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64) {
			t.Errorf("%s: image %q: digest is not sha256:<64 hex>", name, svc.Image)
		}
	}
	if images < 3 {
		t.Errorf("%d services run a pulled image, want kafka, clickhouse and grafana", images)
	}
}

// The simulated fleet is opt-in (profile sim); the pipeline itself runs in every profile, and
// .env.example turns the simulator on for a first run.
func TestComposeProfiles(t *testing.T) {
	p := loadProject(t)
	for _, name := range p.ServiceNames() {
		svc := service(t, p, name)
		switch {
		case name == "simulate":
			if !slices.Equal(svc.Profiles, []string{"sim"}) {
				t.Errorf("simulate: profiles %v, want [sim]", svc.Profiles)
			}
		case len(svc.Profiles) > 0:
			t.Errorf("%s: profiles %v: the pipeline's services run without one", name, svc.Profiles)
		}
	}
	if v := readEnvFile(t, filepath.Join(repoRoot, ".env.example"))["COMPOSE_PROFILES"]; !slices.Contains(strings.Split(v, ","), "sim") {
		t.Errorf(".env.example: COMPOSE_PROFILES %q does not include sim", v)
	}
	// Without a profile, compose must still have every dependency of what it starts.
	root, _ := filepath.Abs(repoRoot)
	o, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithName("gpufleet-test"), cli.WithWorkingDirectory(root), cli.WithEnv(nil),
		cli.WithEnvFiles(filepath.Join(root, ".env.example")), cli.WithDotEnv, cli.WithProfiles(nil))
	if err != nil {
		t.Fatal(err)
	}
	bare, err := o.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading with no profile: %v", err)
	}
	if _, err := bare.GetService("simulate"); err == nil {
		t.Error("simulate runs with no profile")
	}
}

// Every file or directory a service mounts from the repository exists, but for build outputs
// (which the compose file's header says how to build and git ignores).
func TestComposeMountedFilesExist(t *testing.T) {
	p := loadProject(t)
	root, _ := filepath.Abs(repoRoot)
	built := map[string]bool{"plugin/dist": true}
	binds := 0
	for _, name := range p.ServiceNames() {
		for _, v := range service(t, p, name).Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			binds++
			rel, err := filepath.Rel(root, v.Source)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: mounts %q from outside the repository", name, v.Source)
				continue
			}
			if built[filepath.ToSlash(rel)] {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: mounts %s at %s, which does not exist: %v", name, rel, v.Target, err)
			}
		}
	}
	if binds < 4 {
		t.Errorf("%d bind mounts, want at least the users.d file and Grafana's three", binds)
	}
}

func TestComposeConnectionSettings(t *testing.T) {
	p := loadProject(t)
	var dsns, brokers int
	for _, name := range p.ServiceNames() {
		svc := service(t, p, name)
		if v, ok := env(svc, "GPUFLEET_CLICKHOUSE"); ok {
			dsns++
			u, err := url.Parse(v)
			switch {
			case err != nil:
				t.Errorf("%s: GPUFLEET_CLICKHOUSE %q: %v", name, v, err)
			case !strings.HasPrefix(v, "clickhouse://"):
				t.Errorf("%s: GPUFLEET_CLICKHOUSE %q does not start with clickhouse://", name, v)
			case u.Hostname() != "clickhouse":
				t.Errorf("%s: GPUFLEET_CLICKHOUSE %q points at host %q, want clickhouse", name, v, u.Hostname())
			}
		}
		if v, ok := env(svc, "GPUFLEET_BROKERS"); ok {
			brokers++
			for b := range strings.SplitSeq(v, ",") {
				if strings.TrimSpace(b) != "kafka:9092" {
					t.Errorf("%s: GPUFLEET_BROKERS %q has broker %q, want kafka:9092", name, v, b)
				}
			}
		}
	}
	// migrate + ingest talk to ClickHouse; ingest + simulate talk to Kafka.
	if dsns < 2 {
		t.Errorf("GPUFLEET_CLICKHOUSE set on %d services, want at least 2", dsns)
	}
	if brokers < 2 {
		t.Errorf("GPUFLEET_BROKERS set on %d services, want at least 2", brokers)
	}
}

func TestDockerfileBuildsGpufleet(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{"go build", "./cmd/gpufleet", "CGO_ENABLED=0", `ENTRYPOINT ["/gpufleet"]`} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	lines := strings.Split(df, "\n")
	if !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "FROM gcr.io/distroless/static-debian12")
	}) {
		t.Error("Dockerfile final stage is not distroless static-debian12")
	}
}
