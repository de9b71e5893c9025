package deploy_test

import (
	"bytes"
	"net"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// promConfig is the part of Prometheus' configuration file (prometheus/config.Config) that
// deploy/prometheus/prometheus.yml uses, field names as Prometheus spells them. Decoding is strict,
// so a misspelt key fails here as Prometheus would refuse it. Prometheus' own loader is not a
// dependency: its module brings every service-discovery SDK.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string          `yaml:"targets"`
			Labels  map[string]string `yaml:"labels"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// Every scrape target of the compose Prometheus is a compose service on the port its gpufleet
// daemon serves /metrics on, and every long-running gpufleet daemon is scraped; the file compose
// mounts is this one.
func TestComposePrometheusScrapesEveryDaemon(t *testing.T) {
	data, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg promConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	p := loadProject(t)
	prom := service(t, p, "prometheus")
	mounted := false
	for _, v := range prom.Volumes {
		if strings.HasSuffix(v.Source, "deploy/prometheus/prometheus.yml") && v.Target == "/etc/prometheus/prometheus.yml" && v.ReadOnly {
			mounted = true
		}
	}
	if !mounted || !strings.Contains(strings.Join(prom.Command, " "), "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus does not run on deploy/prometheus/prometheus.yml mounted read-only: command %v, volumes %+v", prom.Command, prom.Volumes)
	}
	jobs := map[string]bool{}
	scraped := map[string]bool{}
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName == "" || jobs[sc.JobName] {
			t.Errorf("scrape job name %q empty or repeated", sc.JobName)
		}
		jobs[sc.JobName] = true
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("%s: metrics_path %q; gpufleet serves /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			for _, target := range st.Targets {
				host, port, err := net.SplitHostPort(target)
				if err != nil {
					t.Errorf("%s: target %q: %v", sc.JobName, target, err)
					continue
				}
				svc := service(t, p, host)
				if got := metricsPort(svc.Environment); got != port {
					t.Errorf("%s: target %s, but service %s serves /metrics on port %q", sc.JobName, target, host, got)
				}
				scraped[host] = true
			}
		}
	}
	for _, name := range p.ServiceNames() {
		svc := service(t, p, name)
		if svc.Build != nil && svc.Restart != "no" && !scraped[name] {
			t.Errorf("gpufleet daemon %s is not scraped", name)
		}
	}
}

// metricsPort is the port of the daemon's /metrics listener from its GPUFLEET_METRICS_ADDR, or
// GPUFLEET_HTTP for the api (which serves /metrics beside the API).
func metricsPort(env map[string]*string) string {
	for _, k := range []string{"GPUFLEET_METRICS_ADDR", "GPUFLEET_HTTP"} {
		if v, ok := env[k]; ok && v != nil {
			if _, port, err := net.SplitHostPort(*v); err == nil {
				return port
			}
		}
	}
	return ""
}
