package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/gpufleet/gpufleet/internal/retry"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// DefaultDLQMaxMessageBytes is the max.message.bytes PipelineTopics gives the dead-letter topic: a
// dead letter is a whole source message plus headers, and agents legitimately send messages of
// several MB (16 GPUs, long labels, --send-every 600), which the broker's default of 1 MiB refuses.
// It bounds the compressed record batch, so 16 MiB holds messages far larger uncompressed.
const DefaultDLQMaxMessageBytes = 16 << 20

// Topic is a topic to create if missing. Zero settings take the broker's defaults.
type Topic struct {
	Name       string
	Partitions int
	// ReplicationFactor is the copies of each partition; 0 takes the broker's
	// default.replication.factor.
	ReplicationFactor int
	// MinInsyncReplicas sets min.insync.replicas: a write with acks=all (the agent's) fails unless
	// this many copies took it, so that a broker lost right after an ack loses nothing. 0 leaves
	// the broker's default (1 unless changed).
	MinInsyncReplicas int
	// MaxMessageBytes sets the topic's max.message.bytes, the largest (compressed) record batch the
	// broker accepts on it; 0 leaves the broker's message.max.bytes (1 MiB unless changed).
	MaxMessageBytes int
	// Retention sets retention.ms, how long messages stay on the topic; 0 leaves the broker's
	// default (7 days unless changed), a negative value keeps them forever. Ingest must catch up
	// within it, or unread messages are deleted.
	Retention time.Duration
}

// PipelineTopics are the pipeline's topics under their default names: samples and events with
// partitions partitions, and the one-partition dead-letter topic with dlqMaxMessageBytes (0 means
// DefaultDLQMaxMessageBytes).
func PipelineTopics(partitions, dlqMaxMessageBytes int) []Topic {
	if dlqMaxMessageBytes <= 0 {
		dlqMaxMessageBytes = DefaultDLQMaxMessageBytes
	}
	return []Topic{{Name: wire.SamplesTopic, Partitions: partitions}, {Name: wire.EventsTopic, Partitions: partitions},
		{Name: wire.DLQTopic, Partitions: 1, MaxMessageBytes: dlqMaxMessageBytes}}
}

func (t Topic) validate() error {
	switch {
	case t.Name == "":
		return errors.New("topic: Name is empty")
	case t.Partitions < 1:
		return fmt.Errorf("topic %s: Partitions %d must be at least 1", t.Name, t.Partitions)
	case t.ReplicationFactor < 0 || t.ReplicationFactor > 32767:
		return fmt.Errorf("topic %s: ReplicationFactor %d must be 0 (the broker's default) to 32767", t.Name, t.ReplicationFactor)
	case t.MinInsyncReplicas < 0:
		return fmt.Errorf("topic %s: MinInsyncReplicas %d is negative", t.Name, t.MinInsyncReplicas)
	case t.ReplicationFactor > 0 && t.MinInsyncReplicas > t.ReplicationFactor:
		return fmt.Errorf("topic %s: MinInsyncReplicas %d is above ReplicationFactor %d: no write could ever succeed",
			t.Name, t.MinInsyncReplicas, t.ReplicationFactor)
	case t.MaxMessageBytes < 0:
		return fmt.Errorf("topic %s: MaxMessageBytes %d is negative", t.Name, t.MaxMessageBytes)
	}
	return nil
}

// configs are the topic-level settings t sets, by Kafka name.
func (t Topic) configs() map[string]string {
	c := map[string]string{}
	if t.MinInsyncReplicas > 0 {
		c["min.insync.replicas"] = strconv.Itoa(t.MinInsyncReplicas)
	}
	if t.MaxMessageBytes > 0 {
		c["max.message.bytes"] = strconv.Itoa(t.MaxMessageBytes)
	}
	switch {
	case t.Retention < 0:
		c["retention.ms"] = "-1"
	case t.Retention > 0:
		c["retention.ms"] = strconv.FormatInt(t.Retention.Milliseconds(), 10)
	}
	return c
}

// managedConfigs are the topic configs TopicStatus reports.
var managedConfigs = []string{"min.insync.replicas", "max.message.bytes", "retention.ms"}

// TopicStatus is what EnsureTopics found or made of one topic.
type TopicStatus struct {
	Name              string
	Created           bool
	Partitions        int
	ReplicationFactor int
	// Configs are the topic's effective min.insync.replicas, max.message.bytes and retention.ms.
	Configs map[string]string
	// Updated are the configs EnsureTopics changed on an existing topic, "name old → new".
	Updated []string
	// Differs are settings of an existing topic that differ from the wanted ones and that the
	// set-up leaves alone: more partitions would move keys to other partitions (a node's batches
	// out of order), a replication factor change is a reassignment.
	Differs []string
}

// String is one line for the operator, e.g. "gpu.samples: created, 8 partitions, replication
// factor 3, min.insync.replicas=2 max.message.bytes=1048588 retention.ms=604800000".
func (s TopicStatus) String() string {
	state := "exists"
	if s.Created {
		state = "created"
	}
	var cfg []string
	for _, k := range managedConfigs {
		if v, ok := s.Configs[k]; ok {
			cfg = append(cfg, k+"="+v)
		}
	}
	line := fmt.Sprintf("%s: %s, %d partitions, replication factor %d, %s", s.Name, state, s.Partitions, s.ReplicationFactor, strings.Join(cfg, " "))
	if len(s.Updated) > 0 {
		line += "; updated " + strings.Join(s.Updated, ", ")
	}
	if len(s.Differs) > 0 {
		line += "; differs from the wanted " + strings.Join(s.Differs, ", ") + " (left as is)"
	}
	return line
}

// Admin runs the admin calls against one cluster.
type Admin struct {
	brokers []string
	conn    *Conn
	client  *kafkago.Client
}

// NewAdmin returns an Admin for brokers, connecting with conn (nil: plaintext).
func NewAdmin(brokers []string, conn *Conn) *Admin {
	return &Admin{brokers: brokers, conn: conn,
		client: &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: conn.Transport(), Timeout: 10 * time.Second}}
}

// WaitReachable dials the brokers until one answers a metadata request, backing off (jittered)
// up to 2 s between tries, and gives up after timeout with an *UnreachableError. A
// broker that refuses the connection's settings (a wrong password, an untrusted certificate) ends
// the wait at once with a *SettingError: retrying would only repeat the refusal.
func (a *Admin) WaitReachable(ctx context.Context, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	// The warning goes by time, not by tries: with jittered waits a count of tries can come within
	// a short --connect-timeout, and a wait that ends in an error within seconds needs no warning
	// before it (first after 3 s, then every 10 s, as the doubling waits used to give).
	nextWarn := time.Now().Add(3 * time.Second)
	err := retry.Do(ctx, retry.Policy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}, func(ctx context.Context) error {
		last = a.Ping(ctx)
		if errors.As(last, new(*SettingError)) {
			return retry.Permanent(last)
		}
		return last
	}, retry.OnRetry(func(_ int, err error, _ time.Duration) {
		if now := time.Now(); log != nil && now.After(nextWarn) {
			nextWarn = now.Add(10 * time.Second)
			log.Warn("kafka not reachable yet, retrying", slog.String("brokers", strings.Join(a.brokers, ",")), slog.Any("err", err))
		}
	}))
	if err == nil || errors.As(err, new(*SettingError)) {
		return err // a Permanent error comes back as Ping returned it
	}
	// Without MaxTries, Do gives up only once ctx ends.
	hint := ""
	if !a.conn.Config().Enabled() && closedAtOnce(last) {
		hint = "; a broker that closes plaintext connections at once may want TLS or SASL"
	}
	return &UnreachableError{Brokers: a.brokers, Wait: timeout, Last: last, Hint: hint}
}

// UnreachableError is WaitReachable giving up: no broker answered within the wait. It names the
// broker addresses, not the setting that gave them, which is the caller's to name.
type UnreachableError struct {
	Brokers []string
	Wait    time.Duration
	Last    error  // the last try's error, shown but not wrapped: what to check is the addresses
	Hint    string // "; ..." when the failure suggests a cause, else empty
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach Kafka at %s after %s (%v): check the broker addresses and that the broker is running%s",
		strings.Join(e.Brokers, ","), e.Wait, e.Last, e.Hint)
}

// Ping dials each broker once until one answers a metadata request. It returns nil then, a
// *SettingError when a broker refused the connection's settings, or else the last
// broker's error.
func (a *Admin) Ping(ctx context.Context) error {
	dialer := a.conn.Dialer()
	if dialer == nil {
		dialer = kafkago.DefaultDialer
	}
	var last error
	for _, b := range a.brokers {
		c, err := dialer.DialContext(ctx, "tcp", b)
		if err == nil {
			_, err = c.Brokers()
			c.Close()
			if err == nil {
				return nil
			}
		}
		if serr := a.conn.Explain(err); errors.As(serr, new(*SettingError)) {
			return fmt.Errorf("connect to Kafka at %s: %w", b, serr)
		}
		last = err
	}
	return last
}

// closedAtOnce is a connection that was accepted and then closed: what a TLS or SASL listener does
// to a plaintext client.
func closedAtOnce(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// Brokers returns how many brokers the cluster has.
func (a *Admin) Brokers(ctx context.Context) (int, error) {
	md, err := a.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{}})
	if err != nil {
		return 0, fmt.Errorf("list brokers: %w", a.conn.Explain(err))
	}
	return len(md.Brokers), nil
}

// EnsureTopics creates the topics that do not exist yet. On existing ones it sets the configs a
// Topic names (MinInsyncReplicas, MaxMessageBytes, Retention) where they differ, and reports but
// leaves partitions and replication factor. Running it again changes nothing.
func (a *Admin) EnsureTopics(ctx context.Context, topics []Topic) ([]TopicStatus, error) {
	req := &kafkago.CreateTopicsRequest{}
	for _, t := range topics {
		if err := t.validate(); err != nil {
			return nil, err
		}
		rf := t.ReplicationFactor
		if rf == 0 {
			rf = -1 // the broker's default.replication.factor
		}
		tc := kafkago.TopicConfig{Topic: t.Name, NumPartitions: t.Partitions, ReplicationFactor: rf}
		for k, v := range t.configs() {
			tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
	}
	res, err := a.client.CreateTopics(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("create topics: %w", a.conn.Explain(err))
	}
	out := make([]TopicStatus, len(topics))
	for i, t := range topics {
		out[i].Name = t.Name
		switch err := res.Errors[t.Name]; {
		case err == nil:
			out[i].Created = true
		case errors.Is(err, kafkago.TopicAlreadyExists):
		case errors.Is(err, kafkago.InvalidReplicationFactor):
			n, _ := a.Brokers(ctx)
			return nil, fmt.Errorf("create topic %s: replication factor %d but the cluster has %d brokers: %w", t.Name, t.ReplicationFactor, n, err)
		case IsAuthorization(err):
			return nil, fmt.Errorf("create topic %s: %w", t.Name, a.conn.Denied("Create", "topic "+t.Name,
				"topics are created by an admin user: run `gpufleet topics` as one (deploy/kafka/acls.sh grants it Create)", err))
		default:
			return nil, fmt.Errorf("create topic %s: %w", t.Name, err)
		}
	}
	// Metadata reaches every listener shortly after creation; wait so the first produce does not fail.
	for i, t := range topics {
		md, err := a.waitTopic(ctx, t.Name)
		if err != nil {
			return nil, err
		}
		out[i].Partitions = len(md.Partitions)
		out[i].ReplicationFactor = len(md.Partitions[0].Replicas)
		if !out[i].Created {
			if t.Partitions != out[i].Partitions {
				out[i].Differs = append(out[i].Differs, fmt.Sprintf("partitions %d (has %d)", t.Partitions, out[i].Partitions))
			}
			if t.ReplicationFactor > 0 && t.ReplicationFactor != out[i].ReplicationFactor {
				out[i].Differs = append(out[i].Differs, fmt.Sprintf("replication factor %d (has %d)", t.ReplicationFactor, out[i].ReplicationFactor))
			}
		}
		have, err := a.topicConfigs(ctx, t.Name)
		if err != nil {
			return nil, err
		}
		var alter []kafkago.IncrementalAlterConfigsRequestConfig
		for k, v := range t.configs() {
			if have[k] != v {
				alter = append(alter, kafkago.IncrementalAlterConfigsRequestConfig{Name: k, Value: v, ConfigOperation: kafkago.ConfigOperationSet})
				out[i].Updated = append(out[i].Updated, fmt.Sprintf("%s %s → %s", k, have[k], v))
				have[k] = v
			}
		}
		slices.Sort(out[i].Updated)
		if len(alter) > 0 {
			ares, err := a.client.IncrementalAlterConfigs(ctx, &kafkago.IncrementalAlterConfigsRequest{Resources: []kafkago.IncrementalAlterConfigsRequestResource{{
				ResourceType: kafkago.ResourceTypeTopic, ResourceName: t.Name, Configs: alter}}})
			if err != nil {
				return nil, fmt.Errorf("set configs of topic %s: %w", t.Name, a.conn.Explain(err))
			}
			for _, r := range ares.Resources {
				if r.Error != nil {
					return nil, fmt.Errorf("set configs of topic %s: %w", t.Name, a.conn.Denied("AlterConfigs", "topic "+t.Name, "", r.Error))
				}
			}
			if err := a.waitConfigs(ctx, t.Name, t.configs()); err != nil {
				return nil, err
			}
		}
		out[i].Configs = have
	}
	return out, nil
}

func (a *Admin) waitTopic(ctx context.Context, topic string) (kafkago.Topic, error) {
	for {
		md, err := a.topicMetadata(ctx, topic)
		if err == nil && len(md.Topics) == 1 && IsAuthorization(md.Topics[0].Error) {
			return kafkago.Topic{}, fmt.Errorf("look up topic %s: %w", topic, a.conn.Denied("Describe", "topic "+topic, "", md.Topics[0].Error))
		}
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) > 0 {
			ready := true
			for _, p := range md.Topics[0].Partitions {
				if p.Leader.ID < 0 || p.Error != nil {
					ready = false
				}
			}
			if ready {
				return md.Topics[0], nil
			}
		}
		select {
		case <-ctx.Done():
			return kafkago.Topic{}, fmt.Errorf("topic %s not ready: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitConfigs waits until the brokers describe topic with want. The controller takes a change at
// once, but a broker applies it from the metadata log a moment later and until then describes (and
// enforces) the old value: a reader right after the set-up, such as ingest comparing the
// dead-letter topic's max.message.bytes with the samples topic's, would see the old one.
//
// The broker asked may not know the topic yet at all (a cluster's broker that has not applied the
// creation from the metadata log; seen on a busy 3-broker test cluster): that is waited out too.
func (a *Admin) waitConfigs(ctx context.Context, topic string, want map[string]string) error {
	for {
		have, err := a.topicConfigs(ctx, topic)
		if err != nil && !errors.Is(err, kafkago.UnknownTopicOrPartition) {
			return err
		}
		applied := err == nil
		for k, v := range want {
			if have[k] != v {
				applied = false
			}
		}
		if applied {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("configs of topic %s not applied: %w (last: %w)", topic, ctx.Err(), err)
			}
			return fmt.Errorf("configs of topic %s not applied: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// topicMetadata asks the brokers about topics by name, over a transport of its own: the shared
// one answers from its cache of every topic the user may Describe, where a topic the user may
// not Describe is missing rather than refused (see Conn.MetadataTransport).
func (a *Admin) topicMetadata(ctx context.Context, topics ...string) (*kafkago.MetadataResponse, error) {
	t := a.conn.MetadataTransport(topics)
	defer t.CloseIdleConnections()
	c := &kafkago.Client{Addr: a.client.Addr, Transport: t, Timeout: a.client.Timeout}
	return c.Metadata(ctx, &kafkago.MetadataRequest{Topics: topics})
}

// topicConfigs returns the managed configs of topic, its own or the broker's defaults.
func (a *Admin) topicConfigs(ctx context.Context, topic string) (map[string]string, error) {
	res, err := a.client.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{{
		ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic, ConfigNames: managedConfigs}}})
	if err != nil {
		return nil, fmt.Errorf("describe topic %s: %w", topic, a.conn.Explain(err))
	}
	out := map[string]string{}
	for _, r := range res.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe topic %s: %w", topic, a.conn.Denied("DescribeConfigs", "topic "+topic, "", r.Error))
		}
		for _, e := range r.ConfigEntries {
			out[e.ConfigName] = e.ConfigValue
		}
	}
	return out, nil
}

// MissingTopicsError is CheckTopics finding topics that do not exist.
type MissingTopicsError struct{ Topics []string }

func (e *MissingTopicsError) Error() string {
	if len(e.Topics) == 1 {
		return fmt.Sprintf("topic %s does not exist", e.Topics[0])
	}
	return fmt.Sprintf("topics %s do not exist", strings.Join(e.Topics, ", "))
}

// CheckTopics returns nil when every topic exists with a leader for each partition, a
// *MissingTopicsError naming those that do not exist, or why it could not tell. It never creates
// a topic, whatever the broker's auto.create.topics.enable.
func (a *Admin) CheckTopics(ctx context.Context, topics ...string) error {
	md, err := a.topicMetadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("look up topics %s: %w", strings.Join(topics, ", "), a.conn.Explain(err))
	}
	found := map[string]kafkago.Topic{}
	for _, t := range md.Topics {
		found[t.Name] = t
	}
	var missing []string
	for _, name := range topics {
		t, ok := found[name]
		switch {
		case !ok, errors.Is(t.Error, kafkago.UnknownTopicOrPartition):
			missing = append(missing, name)
		case IsAuthorization(t.Error):
			return fmt.Errorf("look up topic %s: %w", name, a.conn.Denied("Describe", "topic "+name, "", t.Error))
		case t.Error != nil:
			return fmt.Errorf("look up topic %s: %w", name, t.Error)
		}
	}
	if len(missing) > 0 {
		return &MissingTopicsError{Topics: missing}
	}
	return nil
}

// Partitions returns how many partitions each of topics has; a topic the brokers do not answer
// for is left out.
func (a *Admin) Partitions(ctx context.Context, topics ...string) (map[string]int, error) {
	md, err := a.topicMetadata(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("look up topics %s: %w", strings.Join(topics, ", "), a.conn.Explain(err))
	}
	out := map[string]int{}
	for _, t := range md.Topics {
		if t.Error == nil {
			out[t.Name] = len(t.Partitions)
		}
	}
	return out, nil
}

// CheckGroup returns an error naming the refusal when the connection's user may not Describe
// consumer group (implied by Read, which joining the group needs), so that ingest can stop at
// start-up with one line rather than retry joining forever. Any other answer, a coordinator not
// ready yet included, is nil: joining will tell, and that is worth retrying.
func (a *Admin) CheckGroup(ctx context.Context, group string) error {
	res, err := a.client.FindCoordinator(ctx, &kafkago.FindCoordinatorRequest{Key: group, KeyType: kafkago.CoordinatorKeyTypeConsumer})
	if err != nil {
		if serr := a.conn.Explain(err); errors.As(serr, new(*SettingError)) {
			return fmt.Errorf("find the coordinator of group %s: %w", group, serr)
		}
		return nil
	}
	if IsAuthorization(res.Error) {
		return fmt.Errorf("find the coordinator of group %s: %w", group, a.conn.Denied("Describe", "group "+group, "", res.Error))
	}
	return nil
}

// MaxMessageBytes returns a topic's effective max.message.bytes (its own setting or the broker's
// default), so that a writer can tell in advance what the broker will refuse.
func (a *Admin) MaxMessageBytes(ctx context.Context, topic string) (int, error) {
	cfg, err := a.topicConfigs(ctx, topic)
	if err != nil {
		return 0, err
	}
	v, ok := cfg["max.message.bytes"]
	if !ok {
		return 0, fmt.Errorf("describe topic %s: no max.message.bytes in the answer", topic)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("describe topic %s: max.message.bytes %q: %w", topic, v, err)
	}
	return n, nil
}

// WaitReachable is Admin.WaitReachable on a plaintext connection.
func WaitReachable(ctx context.Context, brokers []string, timeout time.Duration, log *slog.Logger) error {
	return NewAdmin(brokers, nil).WaitReachable(ctx, timeout, log)
}

// EnsureTopics is Admin.EnsureTopics on a plaintext connection, for tests and the demo.
func EnsureTopics(ctx context.Context, brokers []string, topics []Topic) error {
	_, err := NewAdmin(brokers, nil).EnsureTopics(ctx, topics)
	return err
}

// MaxMessageBytes is Admin.MaxMessageBytes on a plaintext connection.
func MaxMessageBytes(ctx context.Context, brokers []string, topic string) (int, error) {
	return NewAdmin(brokers, nil).MaxMessageBytes(ctx, topic)
}

// ParseBrokers splits a comma-separated broker list and checks each is host:port.
func ParseBrokers(s string) ([]string, error) {
	var out []string
	for _, b := range strings.Split(s, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			return nil, fmt.Errorf("broker %q is not host:port", b)
		}
		if p, err := strconv.Atoi(port); host == "" || err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("broker %q is not host:port (a host name and a port 1-65535)", b)
		}
		out = append(out, b)
	}
	if len(out) == 0 {
		return nil, errors.New("no broker given")
	}
	return out, nil
}
