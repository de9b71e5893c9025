package plugin_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"

	"github.com/gpufleet/gpufleet/plugin/pkg/plugin"
)

// pki is a throwaway CA with a server and a client certificate, PEM-encoded as a user would paste
// them into the config editor.
type pki struct {
	caPEM, clientCertPEM, clientKeyPEM string
	server                             tls.Certificate
	pool                               *x509.CertPool
}

func newPKI(t *testing.T) pki {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(cn string, usage x509.ExtKeyUsage, ips []net.IP) (certPEM, keyPEM []byte) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature,
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	}
	p := pki{caPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	sc, sk := issue("clickhouse", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	if p.server, err = tls.X509KeyPair(sc, sk); err != nil {
		t.Fatal(err)
	}
	cc, ck := issue("grafana", x509.ExtKeyUsageClientAuth, nil)
	p.clientCertPEM, p.clientKeyPEM = string(cc), string(ck)
	return p
}

// The datasource's TLS settings reach the wire: it verifies the server against the pasted CA and
// presents the pasted client certificate. The listener is a TLS endpoint, not ClickHouse: it reports
// whom it saw and hangs up, so opening the datasource then fails, saying where it tried.
func TestTLSSettingsReachTheWire(t *testing.T) {
	p := newPKI(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err == nil {
				seen <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			} else {
				seen <- "handshake failed: " + err.Error()
			}
			c.Close()
		}
	}()

	open := func(jsonData map[string]any, secure map[string]string) error {
		raw, _ := json.Marshal(jsonData)
		inst, err := plugin.NewDatasource(context.Background(), backend.DataSourceInstanceSettings{JSONData: raw, DecryptedSecureJSONData: secure})
		if err != nil {
			return err
		}
		// The instance connects lazily: the health check is where a user sees the failure.
		ds := inst.(*plugin.Datasource)
		defer ds.Dispose()
		r, err := ds.CheckHealth(context.Background(), &backend.CheckHealthRequest{})
		if err != nil {
			return err
		}
		if r.Status != backend.HealthStatusOk {
			return errors.New(r.Message)
		}
		return nil
	}
	addr := ln.Addr().String()
	err = open(map[string]any{"address": addr, "tlsAuth": true, "tlsAuthWithCACert": true},
		map[string]string{"tlsCACert": p.caPEM, "tlsClientCert": p.clientCertPEM, "tlsClientKey": p.clientKeyPEM})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("open against a TLS endpoint that is not ClickHouse: %v, want an error naming %s", err, addr)
	}
	select {
	case who := <-seen:
		if who != "grafana" {
			t.Fatalf("server saw %q, want the client certificate grafana", who)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no TLS handshake reached the server")
	}

	// Without the CA the server's certificate is not trusted: the client gives up in the handshake.
	err = open(map[string]any{"address": addr, "secure": true}, nil)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted server: %v, want a certificate error", err)
	}
}

func TestTLSConfigNamesTheBadField(t *testing.T) {
	p := newPKI(t)
	cases := []struct {
		name    string
		s       plugin.Settings
		secure  map[string]string
		wantErr string
		wantTLS bool
	}{
		{"plain", plugin.Settings{Address: "ch:9000"}, nil, "", false},
		{"system roots", plugin.Settings{Address: "ch:9440", TLS: true}, nil, "", true},
		{"CA", plugin.Settings{Address: "ch:9440", TLSAuthWithCACert: true}, map[string]string{"tlsCACert": p.caPEM}, "", true},
		{"CA not PEM", plugin.Settings{Address: "ch:9440", TLSAuthWithCACert: true}, map[string]string{"tlsCACert": "hello"}, "tlsCACert", false},
		{"client key missing", plugin.Settings{Address: "ch:9440", TLSAuth: true}, map[string]string{"tlsClientCert": p.clientCertPEM}, "tlsClientKey", false},
		{"client pair", plugin.Settings{Address: "ch:9440", TLSAuth: true},
			map[string]string{"tlsClientCert": p.clientCertPEM, "tlsClientKey": p.clientKeyPEM}, "", true},
		{"chDB", plugin.Settings{CHDBPath: "/x", TLS: true}, nil, "chDB", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.s.TLSConfig(c.secure)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("%v, want an error naming %s", err, c.wantErr)
				}
				return
			}
			if err != nil || (got != nil) != c.wantTLS {
				t.Fatalf("%v %v, want TLS %v", got, err, c.wantTLS)
			}
			if got != nil && got.ServerName != "ch" {
				t.Errorf("server name %q, want ch", got.ServerName)
			}
		})
	}
}
