package local

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
)

// writePair writes a self-signed certificate and its key.
func writePair(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "temporal.internal"}, DNSNames: []string{"temporal.internal"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

// The TLS flags make a client's TLS configuration: the CA, the client
// certificate of mTLS, the server name; an API key turns TLS on; mistakes
// are errors that name the flag.
func TestConnectionOptions(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePair(t, dir)

	var o client.Options
	if err := connection(&o, &TLSOptions{CA: cert, Cert: cert, Key: key, ServerName: "temporal.internal"}, ""); err != nil {
		t.Fatal(err)
	}
	tc := o.ConnectionOptions.TLS
	if tc == nil || tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "temporal.internal" || o.Credentials != nil {
		t.Fatalf("mTLS options: %+v, credentials %v", tc, o.Credentials)
	}

	o = client.Options{}
	if err := connection(&o, &TLSOptions{}, "secret-key"); err != nil {
		t.Fatal(err)
	}
	if o.ConnectionOptions.TLS == nil || o.Credentials == nil {
		t.Error("an API key does not turn on TLS with credentials")
	}

	o = client.Options{}
	if err := connection(&o, &TLSOptions{}, ""); err != nil || o.ConnectionOptions.TLS != nil {
		t.Errorf("no TLS settings gave TLS %v (%v)", o.ConnectionOptions.TLS, err)
	}

	for _, tc := range []struct {
		opts TLSOptions
		want string
	}{
		{TLSOptions{Cert: cert}, "both --tls-cert and --tls-key"},
		{TLSOptions{CA: filepath.Join(dir, "missing.pem")}, "--tls-ca"},
		{TLSOptions{CA: key}, "holds no PEM certificate"},
		{TLSOptions{Cert: cert, Key: cert}, "--tls-cert, --tls-key"},
	} {
		err := connection(&client.Options{}, &tc.opts, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.opts, err, tc.want)
		}
	}
}
