// Command pop3 benchmarks mailconf's POP3 server against Dovecot in one run:
// RETR of every message of a 2,000 × 4 KiB maildrop one command at a time,
// the same pipelined, and 10 clients in parallel (2,000 RETRs in all).
//
//	go run ./bench/pop3 [-n 2000] [-size 4096] [-clients 10] [-runs 3] [-plain] [-cpuprofile f]
//
// Both servers are measured over implicit TLS (pop3s), TLS 1.3 only, with
// the same self-signed ECDSA P-256 certificate (mailconf's own): mailconf
// refuses logins without TLS, so Dovecot gets TLS too. mailconf runs
// in-process on a temporary store (fsync on); Dovecot (Debian
// dovecot-pop3d) is a private instance with the anchor's configuration
// (/work/shared/baselines/dovecot-anchor.sh) plus TLS, written and started
// by this program under its own directory and ports (dovecot.go) and
// stopped at the end. With -plain, Dovecot is also measured without TLS
// (the anchor's original setting) as an extra row. The table says which
// protocol version, cipher suite and key exchange each side negotiated.
//
// Both clients are Go with TCP_NODELAY (Go's default) and send each command
// in one write. Each target gets one untimed warm-up pass; then only the
// RETR phase is timed; login (argon2id on mailconf, a PLAIN passwd-file on
// Dovecot; the TLS handshake happens before and is not included) is
// reported separately. mailconf's
// maildrop lock allows one session per account, so the parallel run gives
// each client its own account holding n/clients messages (bodies shared
// through store.Copy); on Dovecot (pop3_lock_session = no) the clients
// share p's maildrop and each retrieves its own n/clients slice.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
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

type options struct {
	n, size, clients, runs        int
	plain                         bool
	cpuprofile                    string
	dovecotBase                   string
	imapPort, pop3Port, pop3sPort int
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 2000, "messages in the maildrop")
	flag.IntVar(&o.size, "size", 4096, "message size in bytes")
	flag.IntVar(&o.clients, "clients", 10, "parallel clients")
	flag.IntVar(&o.runs, "runs", 3, "repetitions of each measurement (median reported)")
	flag.BoolVar(&o.plain, "plain", true, "also measure Dovecot without TLS (extra row)")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the mailconf measurements (server and client, one process) to this file")
	flag.StringVar(&o.dovecotBase, "dovecot-dir", "/tmp/bench-pop3-dovecot", "base directory of the private Dovecot instance")
	flag.IntVar(&o.imapPort, "dovecot-imap-port", 11143, "private Dovecot IMAP port (loads the maildrop)")
	flag.IntVar(&o.pop3Port, "dovecot-pop3-port", 11110, "private Dovecot plaintext POP3 port")
	flag.IntVar(&o.pop3sPort, "dovecot-pop3s-port", 11995, "private Dovecot implicit-TLS POP3 port")
	flag.Parse()
	if err := run(o); err != nil {
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
	tls            string
}

func run(o options) error {
	ctx := context.Background()
	certDir, err := os.MkdirTemp("", "bench-pop3-cert-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(certDir)
	bc, err := newBenchCert(certDir)
	if err != nil {
		return err
	}
	mc, cleanup, err := startMailconf(ctx, o, bc)
	if err != nil {
		return err
	}
	defer cleanup()
	dcTLS, dcPlain, stopDovecot, err := startDovecot(o, bc)
	if err != nil {
		return err
	}
	defer stopDovecot()

	fmt.Printf("POP3 RETR benchmark: %d messages x %d bytes, %d parallel clients, median of %d runs\n", o.n, o.size, o.clients, o.runs)
	fmt.Println("client: Go, TCP_NODELAY on, one write per command; both servers over implicit TLS 1.3, same ECDSA P-256 certificate; mailconf store fsync on")
	targets := []target{mc, dcTLS}
	if o.plain {
		targets = append(targets, dcPlain)
	}
	res := map[string]result{}
	for _, t := range targets {
		var stopProfile func()
		if t.name == mc.name && o.cpuprofile != "" {
			if stopProfile, err = startProfile(o.cpuprofile); err != nil {
				return err
			}
		}
		r, err := measure(t, o.n, o.clients, o.runs)
		if stopProfile != nil {
			stopProfile()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		res[t.name] = r
	}
	m, d := res[mc.name], res[dcTLS.name]
	p, hasPlain := res[dcPlain.name]
	fmt.Printf("\n%-26s %16s %16s %8s", "test", "mailconf TLS", "dovecot TLS", "ratio")
	if hasPlain {
		fmt.Printf(" %16s %8s", "dovecot plain", "ratio")
	}
	fmt.Println()
	rate := func(count int, d time.Duration) float64 { return float64(count) / d.Seconds() }
	row := func(label string, pick func(result) time.Duration, count int) {
		mr, dr := rate(count, pick(m)), rate(count, pick(d))
		fmt.Printf("%-26s %10.0f msg/s %10.0f msg/s %7.2fx", label, mr, dr, mr/dr)
		if hasPlain {
			pr := rate(count, pick(p))
			fmt.Printf(" %10.0f msg/s %7.2fx", pr, mr/pr)
		}
		fmt.Println()
	}
	row("RETR one at a time", func(r result) time.Duration { return r.seq }, o.n)
	row("RETR pipelined", func(r result) time.Duration { return r.pipe }, o.n)
	row(fmt.Sprintf("RETR %d clients parallel", o.clients), func(r result) time.Duration { return r.par }, o.n)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("%-26s %13.1f ms %13.1f ms %8s", "login (median)", ms(m.login), ms(d.login), "")
	if hasPlain {
		fmt.Printf(" %13.1f ms", ms(p.login))
	}
	fmt.Println()
	fmt.Printf("TLS negotiated: mailconf %s; dovecot %s\n", m.tls, d.tls)
	fmt.Printf("bytes per pass: mailconf %d, dovecot %d (wire form, un-stuffed)\n", m.bytes, d.bytes)
	return nil
}

func startProfile(file string) (func(), error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func measure(t target, n, clients, runs int) (result, error) {
	var seqs, pipes, pars, logins []time.Duration
	var total int64
	// Warm-up: first-login work (size computation, index building) and
	// cold caches belong to neither server's RETR rate.
	c, _, err := open(t.dial, t.users[0], t.pass)
	if err != nil {
		return result{}, err
	}
	negotiated := "plaintext"
	if tc, ok := c.c.(*tls.Conn); ok {
		negotiated = describeTLS(tc.ConnectionState())
	}
	_, err = retrieve(c, 1, n, true)
	quit(c)
	if err != nil {
		return result{}, fmt.Errorf("warm-up: %w", err)
	}
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
	return result{seq: median(seqs), pipe: median(pipes), par: median(pars), login: median(logins), bytes: total, tls: negotiated}, nil
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

func startMailconf(ctx context.Context, o options, bc benchCert) (target, func(), error) {
	n, size, clients := o.n, o.size, o.clients
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
	auth := accounts.NewAuthenticator(st, cfg, accounts.AuthOptions{})
	srv, err := pop3.New(pop3.Config{
		Hostname:      "localhost",
		TLS:           &tls.Config{Certificates: []tls.Certificate{bc.cert}, MinVersion: tls.VersionTLS13},
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
	clientTLS := bc.clientTLS()
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

var existsRE = regexp.MustCompile(`\* (\d+) EXISTS`)

// startDovecot starts the private Dovecot instance and loads p@example.test's
// INBOX with the n messages over IMAP.
func startDovecot(o options, bc benchCert) (tlsT, plainT target, stop func(), err error) {
	d, err := startDovecotInstance(dovecotParams{
		Base: o.dovecotBase, CertFile: bc.certFile, KeyFile: bc.keyFile,
		IMAPPort: o.imapPort, POP3Port: o.pop3Port, POP3SPort: o.pop3sPort,
	}, benchUser+":{PLAIN}"+dovecotPass+"::::::\n")
	if err != nil {
		return target{}, target{}, nil, err
	}
	stop = func() {
		d.stop()
		os.RemoveAll(o.dovecotBase)
	}
	pid, _ := os.ReadFile(filepath.Join(o.dovecotBase, "run", "master.pid"))
	fmt.Printf("dovecot: private instance, master pid %s, pop3s 127.0.0.1:%d, pop3 127.0.0.1:%d\n", strings.TrimSpace(string(pid)), o.pop3sPort, o.pop3Port)
	if err := loadDovecot(fmt.Sprintf("127.0.0.1:%d", o.imapPort), o.n, o.size); err != nil {
		stop()
		return target{}, target{}, nil, err
	}
	clientTLS := bc.clientTLS()
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", o.pop3sPort)
	plainAddr := fmt.Sprintf("127.0.0.1:%d", o.pop3Port)
	tlsT = target{
		name:  "dovecot TLS",
		dial:  func() (net.Conn, error) { return tls.Dial("tcp", tlsAddr, clientTLS) },
		users: []string{benchUser},
		pass:  dovecotPass,
	}
	plainT = target{
		name:  "dovecot plain",
		dial:  func() (net.Conn, error) { return net.Dial("tcp", plainAddr) },
		users: []string{benchUser},
		pass:  dovecotPass,
	}
	return tlsT, plainT, stop, nil
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
