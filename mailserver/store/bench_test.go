package store

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkAcceptParallel measures durable local deliveries of 4 KiB
// messages from parallel goroutines (as SMTP sessions would), each with
// fsync of the body, its directory and the WAL commit.
func BenchmarkAcceptParallel(b *testing.B) {
	ctx := context.Background()
	s, err := Open(ctx, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	a, err := s.CreateAccount(ctx, "bench@example.com", "x", []MailboxSpec{{Inbox, ""}})
	if err != nil {
		b.Fatal(err)
	}
	msg := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64)
	b.SetBytes(int64(len(msg)))
	b.SetParallelism(10) // 20 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Accept(ctx, Incoming{Raw: bytes.NewReader(msg), Local: []int64{a.ID}}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
