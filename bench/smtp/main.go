// Command smtp-bench-server runs mailconf's MX listener in-process on a
// fresh store with one local account, for bench/smtp/run.sh. It prints
// "ready ADDR" once listening and, after SIGTERM or SIGINT, the number of
// messages in the account's INBOX.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"mailconf/config"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/delivery"
	"mailconf/mailserver/smtp"
	"mailconf/mailserver/store"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	dir := flag.String("data", "", "data directory (required, should be empty)")
	flag.Parse()
	if err := run(*addr, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "smtp-bench-server:", err)
		os.Exit(1)
	}
}

func run(addr, dir string) error {
	if dir == "" {
		return fmt.Errorf("-data is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := config.Parse("bench.toml", fmt.Appendf(nil, `
data_dir = %q
hostname = "bench.example.test"
[listen]
smtp = %q
submission = "127.0.0.1:1"
imaps = "127.0.0.1:2"
[[domain]]
name = "example.test"
`, dir, addr))
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	acct, err := accounts.NewManager(st, cfg).Add(ctx, "u@example.test", accounts.RandomPassword())
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d := delivery.New(st, cfg, delivery.Options{Logger: log})
	mx, err := smtp.NewMX(smtp.Config{Hostname: cfg.Hostname, Logger: log, MaxConnsPerIP: 200}, d, d)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- mx.Serve(ln) }()
	fmt.Printf("ready %s\n", ln.Addr())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mx.Shutdown(sctx); err != nil {
		return err
	}
	<-done
	mb, err := st.Mailbox(context.Background(), acct.ID, store.Inbox)
	if err != nil {
		return err
	}
	msgs, err := st.Messages(context.Background(), mb.ID)
	if err != nil {
		return err
	}
	fmt.Printf("delivered %d\n", len(msgs))
	return nil
}
