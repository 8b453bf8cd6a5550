// Command pop3 benchmarks mailconf's POP3 server against Dovecot in one run:
// RETR of every message of a 2,000 × 4 KiB maildrop one command at a time,
// the same pipelined, and 10 clients in parallel (2,000 RETRs in all).
//
//	go run ./bench/pop3 [-n 2000] [-size 4096] [-clients 10] [-runs 3]
//
// mailconf runs in-process on a temporary store (fsync on), over implicit
// TLS because it refuses logins without TLS; Dovecot is the anchor started
// by /work/shared/baselines/dovecot-anchor.sh (pop3 on 127.0.0.1:10110,
// plaintext, user p@example.test). The TLS cost is therefore on mailconf's
// side only. Both clients are Go with TCP_NODELAY (Go's default) and send
// each command in one write, so the delayed-ACK stall of a command split
// over two writes cannot occur; the server side answers each command with
// buffered writes flushed once per batch of pipelined commands.
//
// Only the RETR phase is timed; login (argon2id on mailconf, a PLAIN
// passwd-file on Dovecot) is reported separately. mailconf's maildrop lock
// allows one session per account, so the parallel run gives each client
// its own account holding n/clients messages (bodies shared through
// store.Copy); on Dovecot (pop3_lock_session = no) the clients share p's
// maildrop and each retrieves its own n/clients slice.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailconf/config"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/pop3"
	"mailconf/mailserver/store"
)

const (
	benchUser = "p@example.test"
	// dovecotPass is the anchor's; mailconf's accounts need 8 characters.
	dovecotPass  = "secret"
	mailconfPass = "secret-bench"
)

func main() {
	n := flag.Int("n", 2000, "messages in the maildrop")
	size := flag.Int("size", 4096, "message size in bytes")
	clients := flag.Int("clients", 10, "parallel clients")
	runs := flag.Int("runs", 3, "repetitions of each measurement (median reported)")
	anchor := flag.String("anchor", "/work/shared/baselines/dovecot-anchor.sh", "Dovecot anchor script")
	dovecotIMAP := flag.String("dovecot-imap", "127.0.0.1:10143", "Dovecot IMAP address (to load the maildrop)")
	dovecotPOP := flag.String("dovecot-pop3", "127.0.0.1:10110", "Dovecot POP3 address")
	flag.Parse()
	if err := run(*n, *size, *clients, *runs, *anchor, *dovecotIMAP, *dovecotPOP); err != nil {
		fmt.Fprintln(os.Stderr, "bench/pop3:", err)
		os.Exit(1)
	}
}

// message builds message i: 76-column CRLF lines, some starting with '.'.
func message(i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: bench@example.test\r\nTo: %s\r\nSubject: bench %d\r\nMessage-ID: <%d@bench.example.test>\r\n\r\n", benchUser, i, i)
	line := 0
	for b.Len() < size-80 {
		if line%10 == 3 {
			b.WriteString(".")
		}
		b.WriteString(strings.Repeat(string(rune('a'+line%26)), 74))
		b.WriteString("\r\n")
		line++
	}
	for b.Len() < size-2 {
		b.WriteByte('z')
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

type target struct {
	name string
	dial func() (net.Conn, error)
	// users[0] serves the single-session runs; users[1:], when present,
	// one parallel client each (else the clients share users[0]).
	users []string
	pass  string
}

type result struct {
	seq, pipe, par time.Duration
	login          time.Duration
	bytes          int64
}

func run(n, size, clients, runs int, anchor, dovecotIMAP, dovecotPOP string) error {
	ctx := context.Background()
	mc, cleanup, err := startMailconf(ctx, n, size, clients)
	if err != nil {
		return err
	}
	defer cleanup()
	dc, stopDovecot, err := startDovecot(anchor, dovecotIMAP, dovecotPOP, n, size)
	if err != nil {
		return err
	}
	defer stopDovecot()

	fmt.Printf("POP3 RETR benchmark: %d messages x %d bytes, %d parallel clients, median of %d runs\n", n, size, clients, runs)
	fmt.Println("client: Go, TCP_NODELAY on, one write per command; mailconf over implicit TLS (store fsync on), Dovecot plaintext")
	res := map[string]result{}
	for _, t := range []target{mc, dc} {
		r, err := measure(t, n, clients, runs)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		res[t.name] = r
	}
	fmt.Printf("\n%-26s %16s %16s %10s\n", "test", "mailconf", "dovecot", "ratio")
	row := func(label string, m, d time.Duration, count int) {
		mr := float64(count) / m.Seconds()
		dr := float64(count) / d.Seconds()
		fmt.Printf("%-26s %11.0f msg/s %11.0f msg/s %9.2fx\n", label, mr, dr, mr/dr)
	}
	m, d := res[mc.name], res[dc.name]
	row("RETR one at a time", m.seq, d.seq, n)
	row("RETR pipelined", m.pipe, d.pipe, n)
	row(fmt.Sprintf("RETR %d clients parallel", clients), m.par, d.par, n)
	fmt.Printf("%-26s %14.1f ms %14.1f ms\n", "login (median)", float64(m.login.Microseconds())/1000, float64(d.login.Microseconds())/1000)
	fmt.Printf("bytes per pass: mailconf %d, dovecot %d (wire form, un-stuffed)\n", m.bytes, d.bytes)
	return nil
}

func measure(t target, n, clients, runs int) (result, error) {
	var seqs, pipes, pars, logins []time.Duration
	var total int64
	for range runs {
		for _, pipelined := range []bool{false, true} {
			c, login, err := open(t.dial, t.users[0], t.pass)
			if err != nil {
				return result{}, err
			}
			start := time.Now()
			b, err := retrieve(c, 1, n, pipelined)
			el := time.Since(start)
			quit(c)
			if err != nil {
				return result{}, err
			}
			total = b
			logins = append(logins, login)
			if pipelined {
				pipes = append(pipes, el)
			} else {
				seqs = append(seqs, el)
			}
		}
		el, err := parallel(t, n, clients)
		if err != nil {
			return result{}, err
		}
		pars = append(pars, el)
	}
	return result{seq: median(seqs), pipe: median(pipes), par: median(pars), login: median(logins), bytes: total}, nil
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func parallel(t target, n, clients int) (time.Duration, error) {
	per := n / clients
	conns := make([]*conn, clients)
	for i := range clients {
		user := t.users[0]
		if len(t.users) > 1 {
			user = t.users[i+1]
		}
		c, _, err := open(t.dial, user, t.pass)
		if err != nil {
			return 0, err
		}
		conns[i] = c
	}
	var wg sync.WaitGroup
	errs := make([]error, clients)
	start := time.Now()
	for i, c := range conns {
		first := 1
		if len(t.users) == 1 {
			first = i*per + 1
		}
		wg.Go(func() {
			_, errs[i] = retrieve(c, first, first+per-1, false)
		})
	}
	wg.Wait()
	el := time.Since(start)
	for _, c := range conns {
		quit(c)
	}
	return el, errors.Join(errs...)
}

type conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func (c *conn) status() (string, error) {
	l, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(l, "+OK") && !strings.HasPrefix(l, "+ ") {
		return "", fmt.Errorf("server said %q", strings.TrimSpace(l))
	}
	return l, nil
}

func (c *conn) cmd(s string) (string, error) {
	c.w.WriteString(s + "\r\n")
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	return c.status()
}

func open(dial func() (net.Conn, error), user, pass string) (*conn, time.Duration, error) {
	nc, err := dial()
	if err != nil {
		return nil, 0, err
	}
	c := &conn{c: nc, r: bufio.NewReaderSize(nc, 64<<10), w: bufio.NewWriterSize(nc, 64<<10)}
	if _, err := c.status(); err != nil {
		return nil, 0, err
	}
	start := time.Now()
	if _, err := c.cmd("USER " + user); err != nil {
		return nil, 0, err
	}
	if _, err := c.cmd("PASS " + pass); err != nil {
		return nil, 0, err
	}
	return c, time.Since(start), nil
}

func quit(c *conn) {
	c.cmd("QUIT")
	c.c.Close()
}

// retrieve RETRs messages first..last and returns the un-stuffed bytes.
func retrieve(c *conn, first, last int, pipelined bool) (int64, error) {
	var werr chan error
	if pipelined {
		werr = make(chan error, 1)
		go func() {
			w := bufio.NewWriterSize(c.c, 16<<10)
			for i := first; i <= last; i++ {
				w.WriteString("RETR ")
				w.WriteString(strconv.Itoa(i))
				w.WriteString("\r\n")
			}
			werr <- w.Flush()
		}()
	}
	var total int64
	for i := first; i <= last; i++ {
		if !pipelined {
			c.w.WriteString("RETR ")
			c.w.WriteString(strconv.Itoa(i))
			c.w.WriteString("\r\n")
			if err := c.w.Flush(); err != nil {
				return 0, err
			}
		}
		if _, err := c.status(); err != nil {
			return 0, fmt.Errorf("RETR %d: %w", i, err)
		}
		for {
			l, err := c.r.ReadSlice('\n')
			if err != nil {
				return 0, fmt.Errorf("RETR %d: %w", i, err)
			}
			if len(l) == 3 && l[0] == '.' {
				break
			}
			if l[0] == '.' {
				l = l[1:]
			}
			total += int64(len(l))
		}
	}
	if pipelined {
		if err := <-werr; err != nil {
			return 0, err
		}
	}
	return total, nil
}

func startMailconf(ctx context.Context, n, size, clients int) (target, func(), error) {
	dir, err := os.MkdirTemp("", "bench-pop3-")
	if err != nil {
		return target{}, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	fail := func(err error) (target, func(), error) { cleanup(); return target{}, nil, err }
	cfg, err := config.Parse("bench.toml", []byte(fmt.Sprintf(`data_dir = %q
hostname = "localhost"
[listen]
pop3s = "127.0.0.1:2995"
submissions = "127.0.0.1:2465"
[[domain]]
name = "example.test"
`, dir)))
	if err != nil {
		return fail(err)
	}
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return fail(err)
	}
	mgr := accounts.NewManager(st, cfg)
	acct, err := mgr.Add(ctx, benchUser, mailconfPass)
	if err != nil {
		return fail(err)
	}
	inbox, err := st.Mailbox(ctx, acct.ID, store.Inbox)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("mailconf: delivering %d messages (fsync each) ...\n", n)
	t0 := time.Now()
	var uids []uint32
	for i := range n {
		r, err := st.Deliver(ctx, acct.ID, store.Inbox, message(i, size), time.Time{})
		if err != nil {
			return fail(err)
		}
		uids = append(uids, r.UID)
	}
	fmt.Printf("mailconf: delivered in %v\n", time.Since(t0).Round(time.Millisecond))
	users := []string{benchUser}
	per := n / clients
	for i := range clients {
		u := fmt.Sprintf("p%d@example.test", i)
		a, err := mgr.Add(ctx, u, mailconfPass)
		if err != nil {
			return fail(err)
		}
		ib, err := st.Mailbox(ctx, a.ID, store.Inbox)
		if err != nil {
			return fail(err)
		}
		if _, err := st.Copy(ctx, inbox.ID, uids[i*per:(i+1)*per], ib.ID); err != nil {
			return fail(err)
		}
		users = append(users, u)
	}
	cert, pool, err := selfSigned()
	if err != nil {
		return fail(err)
	}
	auth := accounts.NewAuthenticator(st, cfg, accounts.AuthOptions{})
	srv, err := pop3.New(pop3.Config{
		Hostname:      "localhost",
		TLS:           &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger:        slog.New(slog.DiscardHandler),
		MaxConnsPerIP: 100,
	}, st, auth)
	if err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	go srv.ServeTLS(ln)
	addr := ln.Addr().String()
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	t := target{
		name:  "mailconf",
		dial:  func() (net.Conn, error) { return tls.Dial("tcp", addr, clientTLS) },
		users: users,
		pass:  mailconfPass,
	}
	return t, func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(c)
		st.Close()
		cleanup()
	}, nil
}

func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

var existsRE = regexp.MustCompile(`\* (\d+) EXISTS`)

// startDovecot starts the anchor (unless it already runs, e.g. for another
// benchmark) and makes p@example.test's INBOX hold exactly the n messages.
func startDovecot(anchor, imapAddr, popAddr string, n, size int) (target, func(), error) {
	out, err := exec.Command(anchor, "start").CombinedOutput()
	if err != nil {
		return target{}, nil, fmt.Errorf("dovecot anchor: %v: %s", err, out)
	}
	fmt.Printf("dovecot: %s", out)
	stop := func() {}
	if !bytes.Contains(out, []byte("already running")) {
		stop = func() { exec.Command(anchor, "stop").Run() }
	}
	if err := loadDovecot(imapAddr, n, size); err != nil {
		stop()
		return target{}, nil, err
	}
	return target{
		name:  "dovecot",
		dial:  func() (net.Conn, error) { return net.Dial("tcp", popAddr) },
		users: []string{benchUser},
		pass:  dovecotPass,
	}, stop, nil
}

func loadDovecot(addr string, n, size int) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	r := bufio.NewReader(nc)
	tagged := func(tag string) (string, error) {
		var all strings.Builder
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return all.String(), err
			}
			all.WriteString(l)
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					return all.String(), fmt.Errorf("dovecot imap: %s", strings.TrimSpace(l))
				}
				return all.String(), nil
			}
		}
	}
	if _, err := r.ReadString('\n'); err != nil {
		return err
	}
	fmt.Fprintf(nc, "a LOGIN %s %s\r\n", benchUser, dovecotPass)
	if _, err := tagged("a"); err != nil {
		return err
	}
	fmt.Fprintf(nc, "b SELECT INBOX\r\n")
	sel, err := tagged("b")
	if err != nil {
		return err
	}
	have := 0
	if m := existsRE.FindStringSubmatch(sel); m != nil {
		have, _ = strconv.Atoi(m[1])
	}
	if have == n {
		fmt.Printf("dovecot: maildrop already holds %d messages\n", n)
		return nil
	}
	if have > 0 {
		fmt.Fprintf(nc, "c STORE 1:* +FLAGS.SILENT (\\Deleted)\r\nd EXPUNGE\r\n")
		if _, err := tagged("d"); err != nil {
			return err
		}
	}
	fmt.Printf("dovecot: appending %d messages over IMAP ...\n", n)
	w := bufio.NewWriterSize(nc, 64<<10)
	go func() {
		for i := range n {
			m := message(i, size)
			fmt.Fprintf(w, "x%d APPEND INBOX {%d+}\r\n", i, len(m))
			w.Write(m)
			w.WriteString("\r\n")
		}
		w.Flush()
	}()
	if _, err := tagged(fmt.Sprintf("x%d", n-1)); err != nil {
		return err
	}
	fmt.Fprintf(nc, "z LOGOUT\r\n")
	io.Copy(io.Discard, r)
	return nil
}
