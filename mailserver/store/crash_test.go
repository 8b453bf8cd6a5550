package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const crashEnv = "MAILCONF_STORE_CRASH_CHILD"

// crashBody is the deterministic content of the i-th message: varying
// size, bare CR/LF, NUL and 8-bit bytes.
func crashBody(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	b := make([]byte, 100+r.IntN(20000))
	for j := range b {
		b[j] = byte(r.UintN(256))
	}
	return append([]byte(fmt.Sprintf("X-Seq: %d\r\n", i)), b...)
}

// TestMain lets the test binary act as the crash child: it appends
// messages forever and prints each acknowledged one.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

func crashChild(dir string) {
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	acct, err := s.AccountByAddress(ctx, "crash@example.com")
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	start, _ := strconv.Atoi(os.Getenv(crashEnv + "_START"))
	out := bufio.NewWriter(os.Stdout)
	for i := start; ; i++ {
		r, err := s.Deliver(ctx, acct.ID, "INBOX", crashBody(i), time.Now())
		if err != nil {
			fmt.Fprintln(out, "ERR", err)
			out.Flush()
			os.Exit(3)
		}
		// The acknowledgement goes out only after Deliver returned, as a
		// server's 250 would.
		fmt.Fprintf(out, "ACK %d %d\n", i, r.UID)
		out.Flush()
	}
}

func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAccount(ctx, "crash@example.com", "x", []MailboxSpec{{Inbox, ""}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	acked := map[uint32]int{} // uid -> message index
	next := 0
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, crashEnv+"_START="+strconv.Itoa(next))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := time.Duration(100+rand.IntN(400)) * time.Millisecond
		timer := time.AfterFunc(killAfter, func() { cmd.Process.Signal(syscall.SIGKILL) })
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ACK" {
				t.Fatalf("child said %q (stderr %s)", sc.Text(), stderr.String())
			}
			i, _ := strconv.Atoi(f[1])
			uid, _ := strconv.ParseUint(f[2], 10, 32)
			if prev, dup := acked[uint32(uid)]; dup {
				t.Fatalf("uid %d acknowledged for message %d and %d", uid, prev, i)
			}
			acked[uint32(uid)] = i
			next = i + 1
			n++
		}
		timer.Stop()
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child did not die of SIGKILL: %v (stderr %s)", err, stderr.String())
		}
		if n == 0 {
			t.Fatalf("round %d: child acknowledged nothing in %v", round, killAfter)
		}
		t.Logf("round %d: killed after %v, %d acknowledged", round, killAfter, n)

		// Reopen (recovery, orphan handling) and check every acknowledged
		// message byte for byte.
		s, err := Open(ctx, dir, Options{})
		if err != nil {
			t.Fatalf("reopen after kill: %v", err)
		}
		acct, err := s.AccountByAddress(ctx, "crash@example.com")
		if err != nil {
			t.Fatal(err)
		}
		in, err := s.Mailbox(ctx, acct.ID, Inbox)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		for uid, i := range acked {
			got, err := s.ReadMessage(ctx, in.ID, uid)
			if err != nil {
				t.Fatalf("acknowledged message %d (uid %d) lost: %v", i, uid, err)
			}
			if !bytes.Equal(got, crashBody(i)) {
				t.Fatalf("acknowledged message %d (uid %d) differs", i, uid)
			}
		}
		s.Close()
	}
}
