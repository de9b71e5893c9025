package main

// The Kafka settings every command that talks to the brokers shares (agent, simulate, ingest,
// topics): where the brokers are, and how to connect to them (TLS, SASL).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/gpufleet/gpufleet/agent/spool"
	"github.com/gpufleet/gpufleet/internal/kafka"
	"github.com/gpufleet/gpufleet/internal/retry"
	"github.com/gpufleet/gpufleet/internal/wire"
)

// passwordEnv is the one secret read from the environment without a flag of its own: a flag's
// value shows in ps.
const passwordEnv = "GPUFLEET_KAFKA_SASL_PASSWORD"

// kafkaFlags are the Kafka settings agent, simulate, ingest and topics share.
type kafkaFlags struct {
	brokers        string
	connectTimeout time.Duration
	sec            kafka.Config
	e              *env

	// conn is the connection built from the flags, set by connect (nil: plaintext).
	conn *kafka.Conn
}

func (k *kafkaFlags) register(f *flags) {
	k.e = f.e
	f.StringVar(&k.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap brokers, comma-separated host:port")
	f.DurationVar(&k.connectTimeout, "connect-timeout", 30*time.Second, "how long to retry an unreachable broker at start-up (a refused password or\n"+
		"certificate stops at once)")
	f.BoolVar(&k.sec.TLS.Enable, "kafka-tls", false, "connect to the brokers with TLS (implied by any other --kafka-tls-* flag)")
	f.StringVar(&k.sec.TLS.CAFile, "kafka-tls-ca", "", "PEM file of the CAs that sign the brokers' certificates (default: the system's)")
	f.StringVar(&k.sec.TLS.CertFile, "kafka-tls-cert", "", "PEM client certificate, for brokers that require one (ssl.client.auth); needs --kafka-tls-key")
	f.StringVar(&k.sec.TLS.KeyFile, "kafka-tls-key", "", "PEM private key of --kafka-tls-cert")
	f.StringVar(&k.sec.TLS.ServerName, "kafka-tls-server-name", "", "name the brokers' certificates must carry (default: the host of each broker address)")
	f.BoolVar(&k.sec.TLS.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", false, "accept any broker certificate: encrypted but not authenticated, for tests only")
	f.StringVar(&k.sec.SASL.Mechanism, "kafka-sasl-mechanism", "", "SASL authentication: plain (needs TLS), scram-sha-256 or scram-sha-512; empty disables")
	f.StringVar(&k.sec.SASL.Username, "kafka-sasl-user", "", "SASL user name")
	f.StringVar(&k.sec.SASL.PasswordFile, "kafka-sasl-password-file", "", "file holding the SASL password (or set "+passwordEnv+"; there is no\n"+
		"password flag, as a flag's value shows in ps)")
}

// settingFlags name, for each internal/kafka setting, what sets it on the command line. Longer names
// first: the replacer takes the first match in this order.
var settingFlags = []string{
	"TLS.InsecureSkipVerify", "--kafka-tls-insecure-skip-verify",
	"TLS.ServerName", "--kafka-tls-server-name",
	"TLS.CertFile", "--kafka-tls-cert",
	"TLS.KeyFile", "--kafka-tls-key",
	"TLS.CAFile", "--kafka-tls-ca",
	"TLS.Enable", "--kafka-tls",
	"SASL.Mechanism", "--kafka-sasl-mechanism",
	"SASL.Username", "--kafka-sasl-user",
	"SASL.PasswordFile", "--kafka-sasl-password-file",
	"SASL.Password", "--kafka-sasl-password-file (or " + passwordEnv + ")",
}

var settingReplacer = strings.NewReplacer(settingFlags...)

// explain rewords a refused setting in the flags' names, on one line.
func (k *kafkaFlags) explain(err error) error {
	var serr *kafka.SettingError
	if errors.As(err, &serr) {
		return fmt.Errorf("%s: %s (Kafka at %s)", settingReplacer.Replace(serr.Setting), settingReplacer.Replace(serr.Err.Error()), k.brokers)
	}
	var unreachable *kafka.UnreachableError
	if errors.As(err, &unreachable) {
		return fmt.Errorf("cannot reach Kafka at %s after %s (%v): check --brokers and that the broker is running%s",
			strings.Join(unreachable.Brokers, ","), unreachable.Wait, unreachable.Last, unreachable.Hint)
	}
	var missing *kafka.MissingTopicsError
	if errors.As(err, &missing) {
		return fmt.Errorf("%w on Kafka at %s: create them first with `gpufleet topics --brokers %s` (and the same --kafka-* flags), run by a user allowed to create topics",
			missing, k.brokers, k.brokers)
	}
	return err
}

// setup parses --brokers and builds the connection from the TLS and SASL flags.
func (k *kafkaFlags) setup(log *slog.Logger) ([]string, error) {
	brokers, err := kafka.ParseBrokers(k.brokers)
	if err != nil {
		return nil, usageError{fmt.Errorf("--brokers: %w", err)}
	}
	t := &k.sec.TLS
	t.Enable = t.Enable || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
	if k.sec.SASL.PasswordFile == "" && k.e != nil {
		k.sec.SASL.Password = k.e.getenv(passwordEnv)
	}
	if err := k.sec.Validate(); err != nil {
		var serr *kafka.SettingError
		if errors.As(err, &serr) {
			err = fmt.Errorf("%s: %s", settingReplacer.Replace(serr.Setting), settingReplacer.Replace(serr.Err.Error()))
		}
		return nil, usageError{err}
	}
	conn, err := k.sec.Build()
	if err != nil {
		return nil, k.explain(err)
	}
	k.conn = conn
	if t.InsecureSkipVerify {
		log.Warn("--kafka-tls-insecure-skip-verify: the brokers' certificates are not checked; anyone on the path can pose as them")
	}
	return brokers, nil
}

// connected logs how the brokers were reached, once they were: an error alone is one line.
func (k *kafkaFlags) connected(log *slog.Logger, brokers []string) {
	log.Info("kafka reachable", slog.String("brokers", strings.Join(brokers, ",")), slog.String("security", k.conn.Config().Describe()))
}

// Topics each kind of client needs: an agent writes samples and events, ingest reads them and
// writes dead letters. Each checks only its own, as its user may be allowed no others.
var (
	agentTopics  = []string{wire.SamplesTopic, wire.EventsTopic}
	ingestTopics = []string{wire.SamplesTopic, wire.EventsTopic, wire.DLQTopic}
)

// connect waits for the brokers, checks ingest's topics exist and returns the broker list.
func (k *kafkaFlags) connect(ctx context.Context, log *slog.Logger) ([]string, error) {
	return k.connectTopics(ctx, log, ingestTopics)
}

func (k *kafkaFlags) connectTopics(ctx context.Context, log *slog.Logger, topics []string) ([]string, error) {
	brokers, err := k.setup(log)
	if err != nil {
		return nil, err
	}
	if err := k.check(ctx, log, brokers, topics, k.connectTimeout); err != nil {
		return nil, err
	}
	k.connected(log, brokers)
	return brokers, nil
}

// check waits up to timeout for a broker to answer, then checks the topics exist.
func (k *kafkaFlags) check(ctx context.Context, log *slog.Logger, brokers, topics []string, timeout time.Duration) error {
	admin := kafka.NewAdmin(brokers, k.conn)
	if err := admin.WaitReachable(ctx, timeout, log); err != nil {
		return k.explain(err)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return k.explain(admin.CheckTopics(cctx, topics...))
}

// checkGroup stops ingest at start-up when its user may not use the consumer group: joining would
// be refused, and retried, forever.
func (k *kafkaFlags) checkGroup(ctx context.Context, brokers []string, group string) error {
	cctx, cancel := context.WithTimeout(ctx, k.connectTimeout)
	defer cancel()
	return k.explain(kafka.NewAdmin(brokers, k.conn).CheckGroup(cctx, group))
}

// fatal errors are the ones retrying cannot cure: a refused setting, missing topics.
func fatal(err error) bool {
	return errors.As(err, new(*kafka.SettingError)) || errors.As(err, new(*kafka.MissingTopicsError)) ||
		errors.As(err, new(usageError))
}

// connectOrSpool is connect for an agent: with a spool it does not wait for an unreachable
// broker (sampling starts at once and batches wait on disk). A broker that answers at start-up
// and refuses the settings, or lacks the topics, stops the agent all the same.
func (k *kafkaFlags) connectOrSpool(ctx context.Context, log *slog.Logger, sp *spool.Spool) ([]string, error) {
	if sp == nil {
		return k.connectTopics(ctx, log, agentTopics)
	}
	brokers, err := k.setup(log)
	if err != nil {
		return nil, err
	}
	// One try: a broker that is down refuses it at once, so sampling is not held back.
	err = k.rawCheck(ctx, brokers, min(k.connectTimeout, 3*time.Second))
	switch {
	case err == nil:
		k.connected(log, brokers)
		return brokers, nil
	case fatal(err):
		return nil, k.explain(err)
	}
	log.Warn("kafka not reachable yet; batches wait in the spool", slog.Any("err", err))
	go func() {
		// Not retry.Do: only a refusal lengthens the wait (it is logged, less and less often); an
		// unreachable broker is tried again at the same pace. Nothing ends the loop but success
		// or ctx.
		backoff := retry.Policy{Initial: 20 * time.Second, Max: 10 * time.Minute}.Backoff()
		wait := 10 * time.Second
		for retry.Sleep(ctx, wait) == nil {
			err := k.rawCheck(ctx, brokers, 10*time.Second)
			if err == nil {
				k.connected(log, brokers)
				return
			}
			if fatal(err) {
				// Sending fails for the same reason; say why, less and less often.
				log.Error("kafka refuses this agent; batches wait in the spool", slog.Any("err", k.explain(err)))
				wait = backoff.Next()
			}
		}
	}()
	return brokers, nil
}

// rawCheck tries each broker once (bounded by timeout) and checks the agent's topics, without
// rewording the error, so that fatal can tell its kind.
func (k *kafkaFlags) rawCheck(ctx context.Context, brokers []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	admin := kafka.NewAdmin(brokers, k.conn)
	if err := admin.Ping(ctx); err != nil {
		return err
	}
	return admin.CheckTopics(ctx, agentTopics...)
}
