package testenv

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// ACLBroker is a SASL_SSL broker (as SecureBroker) with KRaft's StandardAuthorizer and
// allow.everyone.if.no.acl.found=false: every user but SuperUser may do nothing until an ACL
// allows it, so a test sees exactly what the granted ACLs permit.
type ACLBroker struct {
	*Broker
	// CAFile is the PEM CA that signed the broker's certificate and CertFile.
	CAFile string
	// CertFile and KeyFile are a client certificate (PEM) the broker accepts.
	CertFile, KeyFile string
	// SuperUser is the broker's own user and the only super user of the client listener: the
	// one that grants ACLs.
	SuperUser string
	// Users are SuperUser, "admin", "agent", "ingest" and "nobody", name → password (random).
	// Only SuperUser has rights of its own.
	Users map[string]string
	// SuperConfig is a Kafka client properties file (security.protocol, sasl.*, ssl.*) for
	// SuperUser, for Kafka's own tools: kafka-acls.sh --command-config.
	SuperConfig string
}

// NewACLKafka starts a broker with deploy/dev/kafka.sh start-acl, stopped when the test ends.
func NewACLKafka(t testing.TB) *ACLBroker {
	t.Helper()
	dir := t.TempDir()
	sec, cli := filepath.Join(dir, "secure"), filepath.Join(dir, "client")
	for _, d := range []string{sec, cli} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	b := &ACLBroker{Broker: &Broker{dir: dir}, SuperUser: "broker", Users: map[string]string{}}
	ca, err := newCA("gpufleet test CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.issue("kafka broker", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)},
		x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.issue("gpufleet client", nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	// The first line is the broker's own user: start-acl makes it the super user.
	var users strings.Builder
	for _, name := range []string{b.SuperUser, "admin", "agent", "ingest", "nobody"} {
		b.Users[name] = randomHex(t)
		users.WriteString(name + " " + b.Users[name] + "\n")
	}
	b.CAFile = filepath.Join(cli, "ca.pem")
	b.CertFile, b.KeyFile = filepath.Join(cli, "client.pem"), filepath.Join(cli, "client.key")
	keystore := filepath.Join(cli, "client-keystore.pem")
	b.SuperConfig = filepath.Join(cli, "super.properties")
	super := strings.Join([]string{
		"security.protocol=SASL_SSL",
		"sasl.mechanism=SCRAM-SHA-512",
		`sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="` + b.SuperUser +
			`" password="` + b.Users[b.SuperUser] + `";`,
		"ssl.truststore.type=PEM",
		"ssl.truststore.location=" + b.CAFile,
		"ssl.keystore.type=PEM",
		"ssl.keystore.location=" + keystore,
	}, "\n") + "\n"
	files := map[string][]byte{
		filepath.Join(sec, "ca.pem"):     ca.certPEM,
		filepath.Join(sec, "server.pem"): append(append(server.keyPEM, server.certPEM...), ca.certPEM...),
		filepath.Join(sec, "users"):      []byte(users.String()),
		b.CAFile:                         ca.certPEM,
		b.CertFile:                       client.certPEM,
		b.KeyFile:                        client.keyPEM,
		// Java's PEM keystore: the key, then its certificate.
		keystore:      append(append([]byte{}, client.keyPEM...), client.certPEM...),
		b.SuperConfig: []byte(super),
	}
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr, lease := startOnFreePorts(t, "kafka broker with ACLs", 2, func(port int) (string, error) {
		return runScript(kafkaScript("start-acl", dir, strconv.Itoa(port)), filepath.Join(dir, "broker.log"), filepath.Join(dir, "format.log"))
	}, func() { _ = kafkaScript("stop", dir).Run() })
	b.Addr = addr
	t.Cleanup(func() {
		_ = kafkaScript("stop", dir).Run()
		lease.release()
	})
	return b
}
