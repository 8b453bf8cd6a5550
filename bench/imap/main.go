// Command imap benchmarks mailconf's IMAP server against Dovecot in one
// run.
//
//	go run ./bench/imap [-n 10000] [-idle 1000] [-dovecot 127.0.0.1:10143]
//
// Phase 1, one client per server over a mailbox of n messages: APPEND (one
// message per command, LITERAL+ since both servers advertise it, so each
// APPEND is a single write and the delayed-ACK trap of mailserver.md §7.2
// cannot occur; Go's TCP_NODELAY is on) fills both mailboxes. Then -rounds
// rounds, the servers taking turns (and swapping who goes first every
// round), each run SELECT, FETCH of header fields for all messages, FETCH
// of all whole bodies (-passes times), STORE on all (+FLAGS \Flagged in
// odd rounds, -FLAGS in even ones, so every round changes every message),
// and two SEARCHes (the flag state the STORE left; a SUBJECT search that
// reads every header), these through a wire-level client (raw.go) whose
// own cost is small beside either server's. Each figure is the median
// over the rounds: the machine's speed drifts over a run, and turns
// within one round see the same drift.
//
// Phase 2: -idle connections log in, SELECT INBOX and IDLE; one more
// client APPENDs a message and the bench measures the time until every
// idler has seen the new EXISTS, and the server's resident memory while
// they idle.
//
// mailconf runs in a child process (this program re-executed with -serve)
// on a temporary store with fsync on, over plaintext like the Dovecot
// anchor (Config.InsecureAuth, for this benchmark only), so memory
// figures are the server's alone. Dovecot is the anchor of
// /work/shared/baselines/dovecot-anchor.sh (user u@example.test, Maildir,
// fsync optimized); start it before running, its mailbox is emptied first
// with "dovecot-anchor.sh reset". Its memory is the sum of the RSS of all
// its processes.
//
// Profiling: -profile DIR runs mailconf inside this process (so the
// client's work shows too) and writes one CPU profile per phase (APPEND,
// then the other phases of the last round, when caches are warm as in
// service) and a heap profile of the IDLE phase into DIR; IMAPBENCH_SERVER_CPUPROFILE=FILE
// makes the child server write a CPU profile of its whole run.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"mailconf/config"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/imap"
	"mailconf/mailserver/store"
)

const (
	benchUser    = "u@example.test"
	dovecotPass  = "secret"
	mailconfPass = "secret-bench"
)

func main() {
	serve := flag.String("serve", "", "internal: run mailconf's IMAP server on this data directory")
	n := flag.Int("n", 10000, "messages in the mailbox")
	idle := flag.Int("idle", 1000, "IDLE connections")
	passes := flag.Int("passes", 5, "FETCH of whole bodies is repeated this many times per round, so the phase lasts long enough to measure")
	rounds := flag.Int("rounds", 5, "rounds of the read and STORE phases, servers taking turns; figures are medians")
	dovecot := flag.String("dovecot", "127.0.0.1:10143", "Dovecot anchor address (empty: skip)")
	profile := flag.String("profile", "", "run mailconf in this process and write a CPU profile of APPEND and of each phase of the last round (and a heap profile of the IDLE phase) into this directory")
	flag.Parse()
	if *serve != "" {
		if err := runServer(*serve); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *rounds < 1 || *passes < 1 || *n < 1 {
		fmt.Fprintln(os.Stderr, "imap bench: -n, -passes and -rounds must be at least 1")
		os.Exit(2)
	}
	if err := run(*n, *idle, *passes, *rounds, *dovecot, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "imap bench:", err)
		os.Exit(1)
	}
}

// runServer is the child: a mailconf IMAP server on a fresh store.
func runServer(dir string) error {
	if path := os.Getenv("IMAPBENCH_SERVER_CPUPROFILE"); path != "" {
		// Whole-run CPU profile of the server process alone.
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	stop, addr, err := startServer(dir)
	if err != nil {
		return err
	}
	fmt.Println("ADDR", addr)
	io.Copy(io.Discard, os.Stdin) // the parent closes stdin to stop us
	return stop()
}

// startServer starts mailconf's IMAP server on a fresh store in dir.
func startServer(dir string) (stop func() error, addr string, err error) {
	ctx := context.Background()
	cfg, err := config.Parse("bench.toml", []byte(fmt.Sprintf("data_dir = %q\nhostname = \"bench.example.test\"\n[listen]\nimap = \"127.0.0.1:1143\"\nsubmission = \"127.0.0.1:1587\"\n[[domain]]\nname = \"example.test\"\n", dir)))
	if err != nil {
		return nil, "", err
	}
	st, err := store.Open(ctx, dir, store.Options{})
	if err != nil {
		return nil, "", err
	}
	if _, err := accounts.NewManager(st, cfg).Add(ctx, benchUser, mailconfPass); err != nil {
		return nil, "", err
	}
	srv, err := imap.New(imap.Config{
		Hostname: "bench.example.test", InsecureAuth: true,
		MaxConnsPerIP: 100000, MaxConnsPerAccount: 100000,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}, st, accounts.NewAuthenticator(st, cfg, accounts.AuthOptions{}))
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	go srv.Serve(ln)
	return func() error {
		err := srv.Shutdown(ctx)
		st.Close()
		return err
	}, ln.Addr().String(), nil
}

type target struct {
	name, addr, user, pass string
	pids                   func() []int
	profile                string // directory for per-phase CPU profiles (in-process server only)
}

func run(n, idle, fetchPasses, rounds int, dovecot, profile string) error {
	dir, err := os.MkdirTemp("", "imapbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var targets []target
	if profile != "" {
		stop, addr, err := startServer(filepath.Join(dir, "data"))
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, target{"mailconf", addr, benchUser, mailconfPass, func() []int { return []int{os.Getpid()} }, profile})
	} else {
		tg, stop, err := startChild(dir)
		if err != nil {
			return err
		}
		defer stop()
		targets = append(targets, tg)
	}
	if dovecot != "" {
		exec.Command("/work/shared/baselines/dovecot-anchor.sh", "reset").Run()
		targets = append(targets, target{"dovecot", dovecot, benchUser, dovecotPass, dovecotPids, ""})
	}
	return runTargets(targets, n, idle, fetchPasses, rounds)
}

// startChild runs mailconf in a child process, so its memory figures are
// the server's alone.
func startChild(dir string) (target, func(), error) {
	child := exec.Command(os.Args[0], "-serve", filepath.Join(dir, "data"))
	child.Stderr = os.Stderr
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		return target{}, nil, err
	}
	stop := func() { stdin.Close(); child.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return target{}, nil, fmt.Errorf("child: %w", err)
	}
	return target{"mailconf", strings.TrimSpace(strings.TrimPrefix(line, "ADDR ")), benchUser, mailconfPass,
		func() []int { return []int{child.Process.Pid} }, ""}, stop, nil
}

func runTargets(targets []target, n, idle, fetchPasses, rounds int) error {
	fmt.Printf("IMAP benchmark: %d messages, %d IDLE connections; APPEND, SELECT and IDLE through Go's imapclient, the other phases through a wire-level client; TCP_NODELAY on, LITERAL+ APPEND, plaintext on loopback, fsync on both; medians of %d rounds\n\n", n, idle, rounds)
	samples := map[string]map[string][]float64{}
	var phases []string
	clients := make([]*imapclient.Client, len(targets))
	for i, tg := range targets {
		c, err := dial(tg, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", tg.name, err)
		}
		defer c.Close()
		clients[i] = c
		samples[tg.name] = map[string][]float64{}
		b := bench{tg: tg, c: c, n: n, res: samples[tg.name], profile: tg.profile}
		if err := b.populate(); err != nil {
			return fmt.Errorf("%s: %w", tg.name, err)
		}
		phases = b.order
	}
	for r := 0; r < rounds; r++ {
		for k := range targets {
			i := k
			if r%2 == 1 {
				i = len(targets) - 1 - k // the other server goes first
			}
			tg := targets[i]
			b := bench{tg: tg, c: clients[i], n: n, res: samples[tg.name]}
			if r == rounds-1 {
				b.profile = tg.profile // the last round: caches warm as in service
			}
			if err := b.rounds(r, fetchPasses); err != nil {
				return fmt.Errorf("%s round %d: %w", tg.name, r+1, err)
			}
			if r == 0 && i == 0 {
				phases = append(phases, b.order...)
			}
		}
	}
	results := map[string]map[string]float64{}
	for name, m := range samples {
		results[name] = map[string]float64{}
		for p, v := range m {
			results[name][p] = median(v)
		}
	}
	fmt.Printf("%-28s", "phase (ops/s)")
	for _, tg := range targets {
		fmt.Printf("%14s", tg.name)
	}
	if len(targets) == 2 {
		fmt.Printf("%14s", "ratio")
	}
	fmt.Println()
	for _, p := range phases {
		fmt.Printf("%-28s", p)
		for _, tg := range targets {
			fmt.Printf("%14.0f", results[tg.name][p])
		}
		if len(targets) == 2 && results["dovecot"][p] > 0 && results["mailconf"][p] > 0 {
			fmt.Printf("%13.2fx", results["mailconf"][p]/results["dovecot"][p])
		}
		fmt.Println()
	}
	fmt.Println()
	if idle <= 0 {
		return nil // -idle 0 skips the IDLE phase
	}
	for _, tg := range targets {
		if err := idlePhase(tg, idle); err != nil {
			return fmt.Errorf("%s idle: %w", tg.name, err)
		}
	}
	return nil
}

func dial(tg target, h *imapclient.UnilateralDataHandler) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(tg.addr, &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		return nil, err
	}
	if err := c.Login(tg.user, tg.pass).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func message(i int) string {
	body := strings.Repeat(fmt.Sprintf("Line %d of the benchmark message body, some filler text here.\r\n", i), 30)
	return fmt.Sprintf("From: Sender %d <s%d@example.org>\r\nTo: u@example.test\r\nSubject: benchmark message number %d\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <b%d@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n%s", i, i, i, i, body)
}

// bench runs the phases of one round against one server.
type bench struct {
	tg      target
	c       *imapclient.Client
	n       int
	res     map[string][]float64 // samples by phase
	order   []string
	profile string // per-phase CPU profiles into this directory
}

func (b *bench) timed(name string, ops int, fn func() error) error {
	if b.profile != "" {
		f, err := os.Create(filepath.Join(b.profile, profileName(name)+".cpu"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	start := time.Now()
	err := fn()
	d := time.Since(start)
	if b.profile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	b.res[name] = append(b.res[name], float64(ops)/d.Seconds())
	b.order = append(b.order, name)
	fmt.Fprintf(os.Stderr, "%s %s: %v\n", b.tg.name, name, d.Round(time.Millisecond))
	return nil
}

// populate fills the mailbox, one APPEND per message.
func (b *bench) populate() error {
	return b.timed("APPEND (msgs/s)", b.n, func() error {
		for i := 0; i < b.n; i++ {
			m := message(i)
			cmd := b.c.Append("INBOX", int64(len(m)), nil)
			io.WriteString(cmd, m)
			cmd.Close()
			if _, err := cmd.Wait(); err != nil {
				return err
			}
		}
		return nil
	})
}

// rounds runs round r's phases over the populated mailbox.
func (b *bench) rounds(r, fetchPasses int) error {
	c, n := b.c, b.n
	err := b.timed("SELECT (selects/s)", 10, func() error {
		for i := 0; i < 10; i++ {
			sel, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				return err
			}
			if int(sel.NumMessages) != n {
				return fmt.Errorf("SELECT: %d messages, want %d", sel.NumMessages, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	rc, err := dialRaw(b.tg)
	if err != nil {
		return err
	}
	defer rc.Close()
	fetch := func(items string, wantBytes bool) error {
		st, err := rc.run("FETCH 1:* "+items, "FETCH")
		if err == nil && st.responses != n {
			err = fmt.Errorf("%d FETCH responses, want %d", st.responses, n)
		}
		if err == nil && wantBytes && st.literal < int64(n)*1000 {
			err = fmt.Errorf("only %d bytes of bodies", st.literal)
		}
		return err
	}
	err = b.timed("FETCH headers (msgs/s)", n, func() error {
		return fetch("(UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)])", false)
	})
	if err != nil {
		return err
	}
	err = b.timed("FETCH bodies (msgs/s)", n*fetchPasses, func() error {
		for pass := 0; pass < fetchPasses; pass++ {
			if err := fetch("(UID BODY.PEEK[])", true); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Every round changes every message's flags: +FLAGS in the first,
	// -FLAGS in the next, and so on.
	store, search := "+FLAGS.SILENT (\\Flagged)", "FLAGGED UNSEEN"
	if r%2 == 1 {
		store, search = "-FLAGS.SILENT (\\Flagged)", "UNFLAGGED UNSEEN"
	}
	err = b.timed("STORE flags (msgs/s)", n, func() error {
		_, err := rc.run("STORE 1:* "+store, "")
		return err
	})
	if err != nil {
		return err
	}
	// The SEARCH phases repeat so that each lasts a few hundred
	// milliseconds; one SEARCH is a few milliseconds, under the noise.
	err = b.timed("SEARCH flags (msgs/s)", searchRepeats*n, func() error {
		for i := 0; i < searchRepeats; i++ {
			st, err := rc.run("SEARCH "+search, "SEARCH")
			if err != nil {
				return err
			}
			if st.numbers != n {
				return fmt.Errorf("SEARCH %s: %d matches, want %d", search, st.numbers, n)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return b.timed("SEARCH SUBJECT (msgs/s)", searchRepeats/5*n, func() error {
		for i := 0; i < searchRepeats/5; i++ {
			// A different message each time; "number 4321" is in
			// exactly one subject's text (and those of 43210-43219).
			st, err := rc.run(`SEARCH SUBJECT "number `+strconv.Itoa((n/2+i*97)%n)+`"`, "SEARCH")
			if err == nil && st.numbers < 1 {
				err = fmt.Errorf("SEARCH SUBJECT found nothing")
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// searchRepeats is how many flag SEARCHes one round runs (a fifth as many
// SUBJECT SEARCHes, each of which reads every header).
const searchRepeats = 50

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func idlePhase(tg target, k int) error {
	var ready, seen sync.WaitGroup
	var loginErr atomic.Value
	clients := make([]*imapclient.Client, k)
	var deliveredAt atomic.Int64
	var last atomic.Int64
	start := time.Now()
	sem := make(chan struct{}, 16)
	for i := 0; i < k; i++ {
		ready.Add(1)
		seen.Add(1)
		go func(i int) {
			defer ready.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			var once sync.Once
			var base atomic.Uint32
			h := &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil && base.Load() != 0 && *d.NumMessages > base.Load() && deliveredAt.Load() != 0 {
					once.Do(func() {
						t := time.Now().UnixNano()
						for {
							old := last.Load()
							if t <= old || last.CompareAndSwap(old, t) {
								break
							}
						}
						seen.Done()
					})
				}
			}}
			c, err := dial(tg, h)
			if err != nil {
				loginErr.Store(err)
				seen.Done()
				return
			}
			sel, err := c.Select("INBOX", nil).Wait()
			if err != nil {
				loginErr.Store(err)
				seen.Done()
				return
			}
			base.Store(sel.NumMessages)
			if _, err := c.Idle(); err != nil {
				loginErr.Store(err)
				seen.Done()
				return
			}
			clients[i] = c
		}(i)
	}
	ready.Wait()
	if err, _ := loginErr.Load().(error); err != nil {
		return err
	}
	setup := time.Since(start)
	time.Sleep(2 * time.Second)
	rss := rssKB(tg.pids())
	if tg.profile != "" {
		if err := writeHeapProfile(filepath.Join(tg.profile, "idle.heap")); err != nil {
			return err
		}
	}
	w, err := dial(tg, nil)
	if err != nil {
		return err
	}
	m := message(-1)
	deliveredAt.Store(time.Now().UnixNano())
	cmd := w.Append("INBOX", int64(len(m)), nil)
	io.WriteString(cmd, m)
	cmd.Close()
	if _, err := cmd.Wait(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { seen.Wait(); close(done) }()
	select {
	case <-done:
		fmt.Printf("%-9s %d IDLE connections (set up in %v): RSS %.1f MB; all saw the new message %v after the APPEND was sent\n",
			tg.name, k, setup.Round(time.Millisecond), float64(rss)/1024, time.Duration(last.Load()-deliveredAt.Load()).Round(time.Millisecond))
	case <-time.After(60 * time.Second):
		fmt.Printf("%-9s %d IDLE connections: RSS %.1f MB; NOT all saw the new message within 60 s\n", tg.name, k, float64(rss)/1024)
	}
	w.Close()
	for _, c := range clients {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

// profileName turns a phase name into a file name.
func profileName(phase string) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(phase))
	return strings.Trim(strings.ReplaceAll(strings.ReplaceAll(name, "--", "-"), "--", "-"), "-")
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "heap: in use %.1f MB, heap sys %.1f MB, stacks %.1f MB, goroutines %d\n",
		float64(ms.HeapInuse)/(1<<20), float64(ms.HeapSys)/(1<<20), float64(ms.StackInuse)/(1<<20), runtime.NumGoroutine())
	return pprof.WriteHeapProfile(f)
}

func rssKB(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				f := strings.Fields(l)
				if len(f) >= 2 {
					v, _ := strconv.ParseInt(f[1], 10, 64)
					total += v
				}
			}
		}
	}
	return total
}

// dovecotPids lists the anchor's master and all its descendants.
func dovecotPids() []int {
	b, err := os.ReadFile("/tmp/bench-dovecot/run/master.pid")
	if err != nil {
		return nil
	}
	master, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(st)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
	}
	var out []int
	for pid := range parent {
		for p := pid; p != 0 && p != 1; p = parent[p] {
			if p == master {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
