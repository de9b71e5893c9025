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
// normalization, consistency checks), using an empty environment so the result does not
// depend on the machine running the test.
func loadProject(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithName("gpufleet-test"),
		cli.WithWorkingDirectory(root),
		cli.WithEnv(nil),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return project
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
	for _, name := range []string{"kafka", "clickhouse", "topics", "migrate", "ingest", "simulate", "api", "grafana"} {
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

func TestComposeHealthchecks(t *testing.T) {
	p := loadProject(t)
	tests := []struct {
		service  string
		wantTest string // substring of the joined healthcheck command
	}{
		{"kafka", "kafka-broker-api-versions.sh"},
		{"clickhouse", "SELECT 1"},
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
		})
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
