package kafka_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/testenv"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// On a broker with an authorizer and deploy/kafka/acls.sh applied, each user's admin calls get
// what its ACLs allow and a *kafka.AuthorizationError naming the operation for the rest. A
// topic the user may not Describe is refused, not reported missing: the broker leaves such topics
// out of an all-topics answer (what kafka-go's transport caches), so before, CheckTopics said
// "topics gpu.samples, gpu.events do not exist" to a user without ACLs and told them to create them.
func TestAdminCallsUnderACLs(t *testing.T) {
	b := testenv.NewACLKafka(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", filepath.Join(root, "deploy/kafka/acls.sh"), "--bootstrap-server", b.Addr,
		"--command-config", b.SuperConfig).CombinedOutput(); err != nil {
		t.Fatalf("deploy/kafka/acls.sh: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := func(user string) *kafka.Admin {
		conn, err := kafka.Config{TLS: kafka.TLS{Enable: true, CAFile: b.CAFile, CertFile: b.CertFile, KeyFile: b.KeyFile},
			SASL: kafka.SASL{Mechanism: kafka.ScramSHA512, Username: user, Password: b.Users[user]}}.Build()
		if err != nil {
			t.Fatal(err)
		}
		return kafka.NewAdmin([]string{b.Addr}, conn)
	}
	topics := kafka.PipelineTopics(2, 0)
	names := []string{wire.SamplesTopic, wire.EventsTopic, wire.DLQTopic}
	// denied checks err is an ACL refusal of op on resource, as a SettingError callers stop on.
	denied := func(what string, err error, op, resource string) {
		t.Helper()
		var aerr *kafka.AuthorizationError
		if !errors.As(err, &aerr) || aerr.Operation != op || aerr.Resource != resource || !errors.As(err, new(*kafka.SettingError)) {
			t.Errorf("%s: %v; want %s on %s refused", what, err, op, resource)
		}
	}

	// Before the topics exist: who may Describe them learns they are missing, who may not is refused.
	var missing *kafka.MissingTopicsError
	if err := admin("agent").CheckTopics(ctx, wire.SamplesTopic, wire.EventsTopic); !errors.As(err, &missing) || len(missing.Topics) != 2 {
		t.Errorf("agent, before the topics exist: %v; want both missing", err)
	}
	denied("nobody, before the topics exist", admin("nobody").CheckTopics(ctx, wire.SamplesTopic), "Describe", "topic gpu.samples")
	_, err = admin("agent").EnsureTopics(ctx, topics)
	denied("agent creating the topics", err, "Create", "topic gpu.samples")
	if err == nil || !strings.Contains(err.Error(), "run `gpufleet topics` as one") {
		t.Errorf("agent creating the topics: %v; want the advice to run gpufleet topics as an admin", err)
	}

	st, err := admin("admin").EnsureTopics(ctx, topics)
	if err != nil {
		t.Fatalf("admin creating the topics: %v", err)
	}
	for _, s := range st {
		if !s.Created {
			t.Errorf("admin: %s not created", s)
		}
	}
	// Changing a config on existing topics takes AlterConfigs, which the admin has.
	for i := range topics {
		topics[i].Retention = 48 * time.Hour
	}
	if _, err := admin("admin").EnsureTopics(ctx, topics); err != nil {
		t.Errorf("admin setting retention: %v", err)
	}

	if err := admin("agent").CheckTopics(ctx, wire.SamplesTopic, wire.EventsTopic); err != nil {
		t.Errorf("agent checking its topics: %v", err)
	}
	if err := admin("ingest").CheckTopics(ctx, names...); err != nil {
		t.Errorf("ingest checking its topics: %v", err)
	}
	denied("agent checking the DLQ", admin("agent").CheckTopics(ctx, names...), "Describe", "topic gpu.dlq")
	denied("nobody checking the topics", admin("nobody").CheckTopics(ctx, names...), "Describe", "topic gpu.samples")
	if n, err := admin("ingest").MaxMessageBytes(ctx, wire.DLQTopic); err != nil || n != kafka.DefaultDLQMaxMessageBytes {
		t.Errorf("ingest reading the DLQ's max.message.bytes: %d, %v", n, err)
	}
	_, err = admin("agent").MaxMessageBytes(ctx, wire.SamplesTopic)
	denied("agent reading max.message.bytes", err, "DescribeConfigs", "topic gpu.samples")
	// Ingest may use its consumer group and no other.
	if err := admin("ingest").CheckGroup(ctx, "gpufleet-ingest"); err != nil {
		t.Errorf("ingest checking its group: %v", err)
	}
	denied("ingest checking another group", admin("ingest").CheckGroup(ctx, "other"), "Describe", "group other")
	denied("agent checking ingest's group", admin("agent").CheckGroup(ctx, "gpufleet-ingest"), "Describe", "group gpufleet-ingest")
	// The ingest user may describe the configs but not create or change topics.
	_, err = admin("ingest").EnsureTopics(ctx, topics)
	denied("ingest running the topic set-up", err, "Create", "topic gpu.samples")
}
