package apple

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/smallstep/pkcs7"
)

// signer is a signing certificate parsed once: the leaf, the intermediates
// that go into the CMS certificates set, and the key.
type signer struct {
	leaf  *x509.Certificate
	chain []*x509.Certificate
	key   crypto.Signer
}

// newSigner checks that cert can sign profiles Apple will verify.
func newSigner(cert *tls.Certificate) (*signer, error) {
	if cert == nil || len(cert.Certificate) == 0 {
		return nil, errors.New("apple: sign: no certificate")
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("apple: sign: parse certificate: %w", err)
		}
	}
	key, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("apple: sign: private key %T cannot sign", cert.PrivateKey)
	}
	// pkcs7 maps only RSA and ECDSA keys to CMS signature algorithms.
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if !pub.Equal(leaf.PublicKey) {
			return nil, errors.New("apple: sign: private key does not match the certificate")
		}
	case *ecdsa.PublicKey:
		if !pub.Equal(leaf.PublicKey) {
			return nil, errors.New("apple: sign: private key does not match the certificate")
		}
	default:
		return nil, fmt.Errorf("apple: sign: unsupported key type %T (want RSA or ECDSA)", pub)
	}
	s := &signer{leaf: leaf, key: key}
	for i, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("apple: sign: parse chain certificate %d: %w", i+1, err)
		}
		s.chain = append(s.chain, c)
	}
	return s, nil
}

// valid reports an error when the certificate is outside its validity
// period at now.
func (s *signer) valid(now time.Time) error {
	// An expired signer makes devices show "Unverified" (formats.md §3.5):
	// better to say so than to hand out a signature that looks broken.
	if now.After(s.leaf.NotAfter) || now.Before(s.leaf.NotBefore) {
		return fmt.Errorf("apple: sign: certificate %q is valid only from %s to %s",
			s.leaf.Subject.CommonName, s.leaf.NotBefore.Format(time.RFC3339), s.leaf.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// sign wraps content in a DER CMS SignedData with the content attached.
func (s *signer) sign(content []byte) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, fmt.Errorf("apple: sign: %w", err)
	}
	// The library defaults to SHA-1 (and its default is process-global), so
	// the digest is always set on this SignedData before adding the signer.
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if len(s.chain) > 0 {
		// Intermediates are included: without them devices cannot build
		// the chain and show "Not Verified".
		err = sd.AddSignerChain(s.leaf, s.key, s.chain, pkcs7.SignerInfoConfig{})
	} else {
		err = sd.AddSigner(s.leaf, s.key, pkcs7.SignerInfoConfig{})
	}
	if err != nil {
		return nil, fmt.Errorf("apple: sign: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("apple: sign: finish: %w", err)
	}
	return der, nil
}

// Sign returns profile wrapped in a DER CMS SignedData (attached content,
// SHA-256) signed with cert, whose chain (cert.Certificate[1:]) is included.
func Sign(profile []byte, cert *tls.Certificate) ([]byte, error) {
	s, err := newSigner(cert)
	if err != nil {
		return nil, err
	}
	if err := s.valid(time.Now()); err != nil {
		return nil, err
	}
	return s.sign(profile)
}
