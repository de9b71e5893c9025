package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms, as Kafka names them (sasl.enabled.mechanisms).
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// Config is how to connect to the brokers. The zero value is plaintext without authentication.
type Config struct {
	TLS  TLS
	SASL SASL
}

// TLS configures the connection's encryption and the broker's authentication.
type TLS struct {
	// Enable connects with TLS; the other fields need it.
	Enable bool
	// CAFile is a PEM bundle of the CAs that sign the brokers' certificates; empty trusts the
	// system's roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and its key, for brokers that
	// authenticate clients by certificate (ssl.client.auth); both or neither.
	CertFile, KeyFile string
	// ServerName is the name the brokers' certificates must carry; empty takes the host of each
	// broker address.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate: encryption without authentication, for
	// tests only.
	InsecureSkipVerify bool
}

// SASL configures authentication by user name and password.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (any case); empty disables SASL.
	Mechanism string
	Username  string
	// Password, or PasswordFile holding it (one trailing newline is ignored): exactly one.
	Password     string
	PasswordFile string
}

// LogValue keeps the password out of logs.
func (s SASL) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mechanism", s.Mechanism), slog.String("username", s.Username),
		slog.String("password_file", s.PasswordFile), slog.Bool("password_set", s.Password != ""))
}

// String keeps the password out of %v.
func (s SASL) String() string {
	return fmt.Sprintf("{Mechanism:%s Username:%s PasswordFile:%s Password:%s}", s.Mechanism, s.Username, s.PasswordFile,
		map[bool]string{true: "xxxxx", false: ""}[s.Password != ""])
}

// Enabled reports whether the connection uses TLS or SASL.
func (c Config) Enabled() bool { return c.TLS.Enable || c.SASL.Mechanism != "" }

// Describe names the security of the connection for a log line, e.g. "SASL_SSL SCRAM-SHA-512 user alice".
func (c Config) Describe() string {
	proto := map[[2]bool]string{{false, false}: "PLAINTEXT", {true, false}: "SSL", {false, true}: "SASL_PLAINTEXT",
		{true, true}: "SASL_SSL"}[[2]bool{c.TLS.Enable, c.SASL.Mechanism != ""}]
	if c.SASL.Mechanism == "" {
		return proto
	}
	return fmt.Sprintf("%s %s user %s", proto, strings.ToUpper(c.SASL.Mechanism), c.SASL.Username)
}

// SettingError is a connection refused because of one setting: a wrong password, an untrusted
// certificate, a mechanism the broker does not offer. Retrying cannot help, so callers stop.
type SettingError struct {
	// Setting is the Config field at fault, e.g. "SASL.Password" or "TLS.CAFile".
	Setting string
	Err     error
}

func (e *SettingError) Error() string { return e.Setting + ": " + e.Err.Error() }
func (e *SettingError) Unwrap() error { return e.Err }

func settingErr(setting, format string, args ...any) error {
	return &SettingError{Setting: setting, Err: fmt.Errorf(format, args...)}
}

// AuthorizationError is a request the broker refused because no ACL allows the connection's
// principal the operation on the resource. Retrying cannot help: an admin must grant it (see
// deploy/kafka/acls.sh), or the client must connect as another user.
type AuthorizationError struct {
	// Principal names who asked, e.g. `user "agent"`; never a password.
	Principal string
	// Operation is the Kafka ACL operation refused: Create, Describe, Read, Write, AlterConfigs...
	Operation string
	// Resource is what it was refused on, e.g. "topic gpu.samples" or "group gpufleet-ingest".
	Resource string
	// Hint, when set, replaces the general advice at the end of the message.
	Hint string
	// Err is the broker's error code (kafkago.TopicAuthorizationFailed and the like).
	Err error
}

func (e *AuthorizationError) Error() string {
	hint := e.Hint
	if hint == "" {
		hint = "an admin grants it with Kafka ACLs (deploy/kafka/acls.sh)"
	}
	reason := e.Err.Error()
	var kerr kafkago.Error
	if errors.As(e.Err, &kerr) {
		reason = kerr.Title()
	}
	return fmt.Sprintf("%s may not %s %s (%s): %s", e.Principal, e.Operation, e.Resource, reason, hint)
}

func (e *AuthorizationError) Unwrap() error { return e.Err }

// IsAuthorization reports whether err is a broker's refusal for want of an ACL.
func IsAuthorization(err error) bool {
	return errors.Is(err, kafkago.TopicAuthorizationFailed) || errors.Is(err, kafkago.GroupAuthorizationFailed) ||
		errors.Is(err, kafkago.ClusterAuthorizationFailed) || errors.Is(err, kafkago.TransactionalIDAuthorizationFailed) ||
		errors.Is(err, kafkago.DelegationTokenAuthorizationFailed)
}

// Denied returns err as a *SettingError holding an *AuthorizationError when the broker refused the
// request for want of an ACL (operation on resource, as Kafka's ACLs name them), and err itself
// otherwise. The setting is the one that chose the principal (SASL.Username, or TLS.CertFile for a
// certificate's principal): it is what to change if the user is the wrong one.
func (c *Conn) Denied(operation, resource, hint string, err error) error {
	if err == nil || !IsAuthorization(err) || errors.As(err, new(*AuthorizationError)) {
		return err
	}
	cfg := c.Config()
	setting, principal := "SASL.Mechanism", "an anonymous client (no SASL user, no client certificate)"
	switch {
	case cfg.SASL.Mechanism != "":
		setting, principal = "SASL.Username", fmt.Sprintf("user %q", cfg.SASL.Username)
	case cfg.TLS.CertFile != "":
		setting, principal = "TLS.CertFile", "the client certificate's principal"
	}
	return &SettingError{Setting: setting, Err: &AuthorizationError{Principal: principal, Operation: operation, Resource: resource,
		Hint: hint, Err: err}}
}

// MetadataTransport returns a transport of its own whose metadata requests name topics, for
// checking them: the shared transport asks for every topic, and the broker leaves out of that
// answer the topics the user may not Describe, so that they look missing; named, they answer
// Topic Authorization Failed. Release it with CloseIdleConnections.
func (c *Conn) MetadataTransport(topics []string) *kafkago.Transport {
	t := &kafkago.Transport{DialTimeout: 5 * time.Second, MetadataTopics: topics}
	if c != nil {
		t.TLS, t.SASL = c.tls, c.mech
	}
	return t
}

// Validate checks the settings without reading any file.
func (c Config) Validate() error {
	t := c.TLS
	if !t.Enable {
		for _, f := range []struct{ name, v string }{{"TLS.CAFile", t.CAFile}, {"TLS.CertFile", t.CertFile},
			{"TLS.KeyFile", t.KeyFile}, {"TLS.ServerName", t.ServerName}} {
			if f.v != "" {
				return settingErr(f.name, "set while TLS.Enable is false")
			}
		}
		if t.InsecureSkipVerify {
			return settingErr("TLS.InsecureSkipVerify", "set while TLS.Enable is false")
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			return settingErr("TLS.CertFile", "empty while TLS.KeyFile is set: give both or neither")
		}
		return settingErr("TLS.KeyFile", "empty while TLS.CertFile is set: give both or neither")
	}
	s := c.SASL
	if s.Mechanism == "" {
		for _, f := range []struct{ name, v string }{{"SASL.Username", s.Username}, {"SASL.Password", s.Password},
			{"SASL.PasswordFile", s.PasswordFile}} {
			if f.v != "" {
				return settingErr(f.name, "set while SASL.Mechanism is empty (use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)")
			}
		}
		return nil
	}
	switch strings.ToUpper(s.Mechanism) {
	case Plain:
		// PLAIN hands the password itself to the broker: without TLS anyone on the path reads it.
		if !t.Enable {
			return settingErr("SASL.Mechanism", "PLAIN sends the password in clear text: enable TLS (TLS.Enable) or use SCRAM-SHA-512")
		}
	case ScramSHA256, ScramSHA512:
	default:
		return settingErr("SASL.Mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", s.Mechanism)
	}
	if s.Username == "" {
		return settingErr("SASL.Username", "empty: SASL %s needs a user name", strings.ToUpper(s.Mechanism))
	}
	switch {
	case s.Password != "" && s.PasswordFile != "":
		return settingErr("SASL.PasswordFile", "set together with SASL.Password: give one")
	case s.Password == "" && s.PasswordFile == "":
		return settingErr("SASL.Password", "empty: give SASL.Password or SASL.PasswordFile")
	}
	return nil
}

// Conn is a validated Config with its files read: what kafka-go clients need to connect. A nil
// *Conn is a plaintext connection without authentication.
type Conn struct {
	cfg       Config // Password cleared: it lives only in mech
	tls       *tls.Config
	mech      sasl.Mechanism
	transport *kafkago.Transport
}

// Build validates c, reads its files (CA, client certificate and key, password) and returns the
// connection settings; a plaintext Config gives nil.
func (c Config) Build() (*Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, nil
	}
	conn := &Conn{cfg: c}
	conn.cfg.SASL.Password = ""
	if c.TLS.Enable {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		conn.tls = tc
	}
	if c.SASL.Mechanism != "" {
		m, err := c.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		conn.mech = m
	}
	conn.transport = &kafkago.Transport{TLS: conn.tls, SASL: conn.mech, DialTimeout: 5 * time.Second}
	return conn, nil
}

func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in, documented as tests only
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, settingErr("TLS.CAFile", "%w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, settingErr("TLS.CAFile", "%s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, settingErr("TLS.CertFile", "load the client certificate %s with key %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func (s SASL) mechanism() (sasl.Mechanism, error) {
	password := s.Password
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, settingErr("SASL.PasswordFile", "%w", err)
		}
		password = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if password == "" {
			return nil, settingErr("SASL.PasswordFile", "%s is empty", s.PasswordFile)
		}
	}
	switch strings.ToUpper(s.Mechanism) {
	case Plain:
		return plain.Mechanism{Username: s.Username, Password: password}, nil
	case ScramSHA256:
		return scramMechanism(scram.SHA256, s.Username, password)
	default:
		return scramMechanism(scram.SHA512, s.Username, password)
	}
}

func scramMechanism(algo scram.Algorithm, user, password string) (sasl.Mechanism, error) {
	m, err := scram.Mechanism(algo, user, password)
	if err != nil {
		// The SCRAM library names the offending string (SASLprep), never its value.
		return nil, settingErr("SASL.Password", "not usable with %s: %w", algo.Name(), err)
	}
	return m, nil
}

// Config returns the settings the connection was built from, without the password.
func (c *Conn) Config() Config {
	if c == nil {
		return Config{}
	}
	return c.cfg
}

// Dialer returns a dialer for kafka-go's Reader and ConsumerGroup (nil: kafka-go's default).
func (c *Conn) Dialer() *kafkago.Dialer {
	if c == nil {
		return nil
	}
	return &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: c.tls, SASLMechanism: c.mech}
}

// Transport returns the shared transport for kafka-go's Writer and Client (nil: kafka-go's
// default). It is an interface so that a plaintext Conn leaves the field truly nil.
func (c *Conn) Transport() kafkago.RoundTripper {
	if c == nil {
		return nil
	}
	return c.transport
}

// Explain turns an error from a connection attempt into a *SettingError naming the setting at
// fault when the broker refused the settings (TLS, SASL), and returns other errors as they are:
// those (a broker down, a network partition) are worth retrying, these are not.
func (c *Conn) Explain(err error) error {
	if err == nil || errors.As(err, new(*SettingError)) {
		return err
	}
	cfg := c.Config()
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		remote    *net.OpError
	)
	trusted := "the system's CAs (set TLS.CAFile to the CA that signed it)"
	if cfg.TLS.CAFile != "" {
		trusted = cfg.TLS.CAFile
	}
	switch {
	case errors.Is(err, kafkago.SASLAuthenticationFailed):
		return settingErr("SASL.Password", "the broker refused user %q with %s: wrong user name or password (%w)",
			cfg.SASL.Username, strings.ToUpper(cfg.SASL.Mechanism), kafkago.SASLAuthenticationFailed)
	case errors.Is(err, kafkago.UnsupportedSASLMechanism):
		return settingErr("SASL.Mechanism", "the broker does not offer %s on this listener (%w)", strings.ToUpper(cfg.SASL.Mechanism),
			kafkago.UnsupportedSASLMechanism)
	case errors.Is(err, kafkago.IllegalSASLState) && cfg.SASL.Mechanism != "":
		return settingErr("SASL.Mechanism", "the broker does not take SASL on this listener (%w)", kafkago.IllegalSASLState)
	case errors.As(err, &unknownCA):
		return settingErr("TLS.CAFile", "the broker's certificate (%s) is not signed by a CA in %s", certName(unknownCA.Cert), trusted)
	case errors.As(err, &hostErr):
		return settingErr("TLS.ServerName", "the broker's certificate is not valid for %q (it names %s)", hostErr.Host, certNames(hostErr.Certificate))
	case errors.As(err, &invalid):
		return settingErr("TLS.CAFile", "the broker's certificate is not acceptable: %v", invalid)
	case errors.As(err, &record):
		return settingErr("TLS.Enable", "the broker did not answer TLS: its listener is plaintext (disable TLS or use its TLS port)")
	case errors.As(err, &remote) && remote.Op == "remote error" && cfg.TLS.Enable:
		// A TLS alert from the broker: under TLS 1.3 the broker judges the client's certificate
		// after the client's handshake is done, so this is how a refused certificate shows.
		if cfg.TLS.CertFile == "" {
			return settingErr("TLS.CertFile", "the broker refused the TLS connection (%v): it may require a client certificate", remote.Err)
		}
		return settingErr("TLS.CertFile", "the broker refused the TLS connection (%v): is the client certificate signed by a CA the broker trusts?", remote.Err)
	}
	return err
}

func certName(c *x509.Certificate) string {
	if c == nil {
		return "unknown"
	}
	return fmt.Sprintf("subject %q, issuer %q", c.Subject.String(), c.Issuer.String())
}

func certNames(c *x509.Certificate) string {
	if c == nil {
		return "nothing"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return fmt.Sprintf("only the subject %q", c.Subject.CommonName)
	}
	return strings.Join(names, ", ")
}
