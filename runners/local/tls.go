package local

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"go.temporal.io/sdk/client"
)

// TLSOptions are the files of a TLS connection to a Temporal cluster.
type TLSOptions struct {
	// CA is a PEM file of the CAs the server's certificate chains to;
	// empty: the system's.
	CA string
	// Cert and Key are this side's certificate and key (mTLS); both or
	// neither.
	Cert, Key string
	// ServerName is the name the server's certificate must have, when it
	// is not the address's host.
	ServerName string
}

// Enabled says whether any TLS setting is given.
func (t *TLSOptions) Enabled() bool {
	return t != nil && (t.CA != "" || t.Cert != "" || t.Key != "" || t.ServerName != "")
}

// connection sets the TLS and API-key credentials of a client's options.
func connection(o *client.Options, t *TLSOptions, apiKey string) error {
	if t.Enabled() || apiKey != "" {
		cfg, err := t.config()
		if err != nil {
			return err
		}
		o.ConnectionOptions.TLS = cfg
	}
	if apiKey != "" {
		o.Credentials = client.NewAPIKeyStaticCredentials(apiKey)
	}
	return nil
}

func (t *TLSOptions) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return cfg, nil
	}
	cfg.ServerName = t.ServerName
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("reading the Temporal CA (--tls-ca): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("the Temporal CA %s (--tls-ca) holds no PEM certificate", t.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case t.Cert != "" && t.Key != "":
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate (--tls-cert, --tls-key): %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	case t.Cert != "" || t.Key != "":
		return nil, errors.New("mTLS needs both --tls-cert and --tls-key")
	}
	return cfg, nil
}

// Dial connects to the Temporal cluster at address with the TLS and
// API-key settings, without starting anything: for administration
// (sluice admin setup).
func Dial(ctx context.Context, address, namespace string, t *TLSOptions, apiKey string) (client.Client, error) {
	o := client.Options{HostPort: address, Namespace: namespace, Logger: sdkLogger(nil)}
	if err := connection(&o, t, apiKey); err != nil {
		return nil, err
	}
	c, err := client.DialContext(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connecting to Temporal at %s: %w", address, err)
	}
	return c, nil
}
