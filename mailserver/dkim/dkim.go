// Package dkim holds the per-domain DKIM signing keys of the built-in mail
// server and signs outgoing mail with github.com/emersion/go-msgauth/dkim.
//
// Keys are RSA-2048. Ed25519 (RFC 8463) gives shorter records and faster
// signatures, but a large share of receivers (notably the big mailbox
// providers) still ignore ed25519-sha256 signatures, so an ed25519-only
// domain would look unsigned to them; RSA-2048 is verified everywhere and
// its public key still fits one TXT record split into 255-byte strings.
package dkim

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailconf/config"
)

// rsaBits is the key size; see the package comment.
const rsaBits = 2048

// headerKeys are the fields signed (RFC 6376 §5.4.1). From is listed twice
// so that a From added later, above the signed one, breaks the signature
// ("over-signing"); the same for Subject, To and Cc which a forwarder could
// otherwise append to steer how the message is shown.
var headerKeys = []string{
	"From", "From", "Sender", "Reply-To", "Subject", "Subject", "Date", "Message-ID",
	"To", "To", "Cc", "Cc", "In-Reply-To", "References",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-Language",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Keys are the signing keys of every served domain. It is immutable after
// Load and safe for concurrent use.
type Keys struct {
	selector string
	keys     map[string]crypto.Signer
}

// Dir is where keys live inside the data directory.
func Dir(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "dkim") }

// Load reads the key of every served domain from data_dir/dkim/<domain>.key,
// generating those that do not exist yet.
func Load(cfg *config.Config) (*Keys, error) {
	k := &Keys{selector: cfg.DKIM.Selector, keys: make(map[string]crypto.Signer, len(cfg.Domains))}
	if k.selector == "" {
		k.selector = "mailconf"
	}
	for _, d := range cfg.Domains {
		key, err := loadOrCreate(Dir(cfg), d.Name)
		if err != nil {
			return nil, err
		}
		k.keys[d.Name] = key
	}
	return k, nil
}

// Selector is the DNS label the public keys are published under.
func (k *Keys) Selector() string { return k.selector }

// Has reports whether domain has a signing key.
func (k *Keys) Has(domain string) bool {
	_, ok := k.keys[strings.ToLower(domain)]
	return ok
}

// Sign returns msg with a DKIM-Signature field for domain prepended.
func (k *Keys) Sign(ctx context.Context, domain string, msg []byte) ([]byte, error) {
	domain = strings.ToLower(domain)
	key, ok := k.keys[domain]
	if !ok {
		return nil, fmt.Errorf("dkim: sign: no key for domain %q", domain)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dkim: sign: %w", err)
	}
	s, err := msgdkim.NewSigner(&msgdkim.SignOptions{
		Domain:                 domain,
		Selector:               k.selector,
		Signer:                 key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys,
	})
	if err != nil {
		return nil, fmt.Errorf("dkim: sign: %w", err)
	}
	if _, err := s.Write(msg); err != nil {
		s.Close()
		return nil, fmt.Errorf("dkim: sign: %w", err)
	}
	if err := s.Close(); err != nil {
		return nil, fmt.Errorf("dkim: sign: %w", err)
	}
	sig := s.Signature()
	out := make([]byte, 0, len(sig)+len(msg))
	return append(append(out, sig...), msg...), nil
}

// TXTRecord is the value to publish at <selector>._domainkey.<domain>.
func (k *Keys) TXTRecord(domain string) (string, error) {
	key, ok := k.keys[strings.ToLower(domain)]
	if !ok {
		return "", fmt.Errorf("dkim: no key for domain %q", domain)
	}
	return txtValue(key.Public())
}

// TXTRecords loads (or creates) the key of every served domain and returns
// the DKIM TXT value per domain, for `mailconf dns`.
func TXTRecords(cfg *config.Config) (map[string]string, error) {
	k, err := Load(cfg)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(k.keys))
	for d := range k.keys {
		v, err := k.TXTRecord(d)
		if err != nil {
			return nil, err
		}
		out[d] = v
	}
	return out, nil
}

func txtValue(pub crypto.PublicKey) (string, error) {
	rk, ok := pub.(*rsa.PublicKey)
	if !ok {
		return "", fmt.Errorf("dkim: unsupported public key type %T", pub)
	}
	// RFC 6376 §3.6.1: p= is the base64 of the DER SubjectPublicKeyInfo.
	der, err := x509.MarshalPKIXPublicKey(rk)
	if err != nil {
		return "", fmt.Errorf("dkim: public key: %w", err)
	}
	return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
}

func keyPath(dir, domain string) string { return filepath.Join(dir, domain+".key") }

// loadOrCreate reads domain's key, creating it when absent. Creation writes
// a temporary file, fsyncs it and hard-links it into place: the link fails
// if another process (the CLI next to the server) won the race, and then
// its key is used, so a domain never has two keys.
func loadOrCreate(dir, domain string) (crypto.Signer, error) {
	if domain == "" || strings.ContainsAny(domain, `/\`) || strings.HasPrefix(domain, ".") {
		return nil, fmt.Errorf("dkim: invalid domain %q", domain)
	}
	path := keyPath(dir, domain)
	key, err := readKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("dkim: key directory: %w", err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("dkim: generate key for %s: %w", domain, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(rk)
	if err != nil {
		return nil, fmt.Errorf("dkim: encode key for %s: %w", domain, err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := os.CreateTemp(dir, "."+domain+".key.*")
	if err != nil {
		return nil, fmt.Errorf("dkim: write key for %s: %w", domain, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("dkim: write key for %s: %w", domain, err)
	}
	if _, err := tmp.Write(pemBytes); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("dkim: write key for %s: %w", domain, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("dkim: write key for %s: %w", domain, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("dkim: write key for %s: %w", domain, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKey(path)
		}
		return nil, fmt.Errorf("dkim: write key for %s: %w", domain, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return rk, nil
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dkim: read key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("dkim: %s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dkim: %s: unexpected PEM block %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("dkim: %s: %w", path, err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("dkim: %s: want an RSA key, got %T", path, key)
	}
	if rk.N.BitLen() < 1024 {
		return nil, fmt.Errorf("dkim: %s: RSA key of %d bits is too weak (RFC 8301)", path, rk.N.BitLen())
	}
	return rk, nil
}
