package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// SecureBroker is a private broker whose only client listener is SASL_SSL: TLS with client
// certificates required, and PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for every user in Users.
// The certificates are generated for the test; nothing of it outlives the test.
type SecureBroker struct {
	*Broker
	// CAFile is the PEM CA that signed the broker's certificate and CertFile.
	CAFile string
	// CertFile and KeyFile are a client certificate (PEM) the broker accepts.
	CertFile, KeyFile string
	// OtherCAFile is a PEM CA that signed nothing here: trusting only it, a client must refuse
	// the broker.
	OtherCAFile string
	// OtherCertFile and OtherKeyFile are a client certificate signed by OtherCAFile's CA, which
	// the broker must refuse.
	OtherCertFile, OtherKeyFile string
	// ServerName is a DNS name the broker's certificate carries besides 127.0.0.1 and localhost.
	ServerName string
	// AdminUser is the broker's own user; Users holds it and the others, name → password.
	AdminUser string
	Users     map[string]string
}

// NewSecureKafka starts a SASL_SSL broker with deploy/dev/kafka.sh start-secure, stopped when the
// test ends. Users are admin and alice, with random passwords.
func NewSecureKafka(t testing.TB) *SecureBroker {
	t.Helper()
	dir := t.TempDir()
	sec, cli := filepath.Join(dir, "secure"), filepath.Join(dir, "client")
	for _, d := range []string{sec, cli} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	b := &SecureBroker{Broker: &Broker{dir: dir}, ServerName: "kafka.gpufleet.test", AdminUser: "admin",
		Users: map[string]string{"admin": randomHex(t), "alice": randomHex(t)}}
	ca, err := newCA("gpufleet test CA")
	if err != nil {
		t.Fatal(err)
	}
	other, err := newCA("a CA the broker does not know")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.issue("kafka broker", []string{"localhost", b.ServerName}, []net.IP{net.IPv4(127, 0, 0, 1)},
		x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.issue("gpufleet client", nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.issue("a stranger", nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	b.CAFile, b.OtherCAFile = filepath.Join(cli, "ca.pem"), filepath.Join(cli, "other-ca.pem")
	b.CertFile, b.KeyFile = filepath.Join(cli, "client.pem"), filepath.Join(cli, "client.key")
	b.OtherCertFile, b.OtherKeyFile = filepath.Join(cli, "stranger.pem"), filepath.Join(cli, "stranger.key")
	users := b.AdminUser + " " + b.Users[b.AdminUser] + "\n" + "alice " + b.Users["alice"] + "\n"
	files := map[string][]byte{
		filepath.Join(sec, "ca.pem"): ca.certPEM,
		// The broker's PEM keystore: its key, then its chain.
		filepath.Join(sec, "server.pem"): append(append(server.keyPEM, server.certPEM...), ca.certPEM...),
		filepath.Join(sec, "users"):      []byte(users),
		b.CAFile:                         ca.certPEM,
		b.OtherCAFile:                    other.certPEM,
		b.CertFile:                       client.certPEM,
		b.KeyFile:                        client.keyPEM,
		b.OtherCertFile:                  stranger.certPEM,
		b.OtherKeyFile:                   stranger.keyPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr, lease := startOnFreePorts(t, "secure kafka broker", 2, func(port int) (string, error) {
		return runScript(kafkaScript("start-secure", dir, strconv.Itoa(port)), filepath.Join(dir, "broker.log"), filepath.Join(dir, "format.log"))
	}, func() { _ = kafkaScript("stop", dir).Run() })
	b.Addr = addr
	t.Cleanup(func() {
		_ = kafkaScript("stop", dir).Run()
		lease.release()
	})
	return b
}

func randomHex(t testing.TB) string {
	var p [12]byte
	if _, err := rand.Read(p[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(p[:])
}

type certAuthority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

type issued struct{ certPEM, keyPEM []byte }

func serial() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62)) }

func newCA(name string) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certAuthority{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func (ca *certAuthority) issue(name string, dns []string, ips []net.IP, usage ...x509.ExtKeyUsage) (issued, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issued{}, err
	}
	sn, err := serial()
	if err != nil {
		return issued{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: name}, DNSNames: dns, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return issued{}, fmt.Errorf("issue certificate %s: %w", name, err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return issued{}, err
	}
	return issued{certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk})}, nil
}
