package bus_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/serket-go/serket/bus"
)

// testPKI is a CA and certificates it signed, as PEM files.
type testPKI struct {
	dir     string
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	CAFile  string
	serial  int64
	servers tls.Certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "serket test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, serial: 1}
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for 127.0.0.1 (server) or a client and
// returns it with its cert and key files.
func (p *testPKI) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile := p.write(t, name+".pem", "CERTIFICATE", der)
	keyFile := p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

// A NATS server that requires TLS is reached with the CA file of its
// certificate (--tls-ca), and with mutual TLS also a client certificate
// (--tls-cert, --tls-key); without them the connection fails, naming why.
func TestConnectTLS(t *testing.T) {
	pki := newPKI(t)
	serverCert, _, _ := pki.issue(t, "server", x509.ExtKeyUsageServerAuth)
	_, clientCert, clientKey := pki.issue(t, "client", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)

	srv, err := bus.StartServer(bus.ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	nc, err := bus.Connect(bus.ConnConfig{URL: url, Name: "tls", CAFile: pki.CAFile, Wait: 5 * time.Second})
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if !nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	nc.Close()
	if _, err := bus.Connect(bus.ConnConfig{URL: url, Name: "no-ca", Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v, want a certificate error", err)
	}

	mtls, err := bus.StartServer(bus.ServerConfig{TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer mtls.Shutdown()
	murl := strings.Replace(mtls.ClientURL(), "nats://", "tls://", 1)
	nc, err = bus.Connect(bus.ConnConfig{URL: murl, Name: "mtls", CAFile: pki.CAFile, CertFile: clientCert, KeyFile: clientKey, Wait: 5 * time.Second})
	if err != nil {
		t.Fatalf("mutual TLS with a client certificate: %v", err)
	}
	nc.Close()
	if _, err := bus.Connect(bus.ConnConfig{URL: murl, Name: "no-cert", CAFile: pki.CAFile, Wait: time.Second}); err == nil {
		t.Error("mutual TLS without a client certificate connected")
	}
	if _, err := bus.Connect(bus.ConnConfig{URL: murl, Name: "half", CAFile: pki.CAFile, CertFile: clientCert, Wait: time.Second}); err == nil || !strings.Contains(err.Error(), "both a cert file and a key file") {
		t.Errorf("a certificate without its key: %v", err)
	}
}
