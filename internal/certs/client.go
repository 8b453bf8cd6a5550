package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"mailconf/config"
)

// The client side: what a client of this service (the probe CLI, the
// probe benchmark) trusts.

// SystemPool returns the system roots, or an empty pool where the system
// has none to offer.
func SystemPool() *x509.CertPool {
	if p, err := x509.SystemCertPool(); err == nil && p != nil {
		return p
	}
	return x509.NewCertPool()
}

// AppendFiles adds the certificates of PEM files (--ca) to pool. A file
// that cannot be read or holds no certificate is an error: the operator
// named it to be trusted.
func AppendFiles(pool *x509.CertPool, files []string) error {
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate in the file", f)
		}
	}
	return nil
}

// TrustOwn adds this service's own certificate (File) to pool, so that a
// fresh install with a self-signed certificate is trusted. A self-signed
// certificate that `mailconf serve` has not generated yet is no error; any
// other unreadable certificate is.
func TrustOwn(pool *x509.CertPool, cfg *config.Config) error {
	own := File(cfg)
	pem, err := os.ReadFile(own)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cfg.TLS.SelfSigned():
		return nil
	case err != nil:
		return err
	case !pool.AppendCertsFromPEM(pem):
		return fmt.Errorf("no PEM certificate in %s", own)
	}
	return nil
}
