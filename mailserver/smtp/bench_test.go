package smtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"mailconf/internal/testutil"
)

type discardSink struct{}

func (discardSink) Accept(context.Context, Envelope, []byte) error { return nil }

// BenchmarkSubmissionSession sends 4 KiB messages through one logged-in
// session on 465 (TLS 1.3, PLAIN) to a sink that discards them: the
// protocol and parsing cost without storage.
func BenchmarkSubmissionSession(b *testing.B) {
	ca := testutil.NewCA(b)
	leaf := ca.Issue(b, []string{testHost}, time.Time{}, time.Time{})
	srv, err := NewSubmission(Config{
		Hostname: testHost,
		TLS:      &tls.Config{Certificates: []tls.Certificate{leaf.Cert}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, &fakeAuth{}, nil, discardSink{}, true)
	if err != nil {
		b.Fatal(err)
	}
	addr := serve(b, srv)
	c, err := gosmtp.DialTLS(addr, &tls.Config{RootCAs: ca.Pool, ServerName: testHost})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", alice, alicePass)); err != nil {
		b.Fatal(err)
	}
	line := strings.Repeat("0123456789abcdef", 4) + "\r\n" // 66 bytes
	msg := []byte("From: alice@example.com\r\nTo: someone@remote.example\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(line, 4096/len(line)))
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.SendMail(alice, []string{remoteRcpt}, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
