package pop3

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailconf/internal/testutil"
)

// Real POP3 clients against the server: Python poplib, curl, fetchmail,
// getmail6. Passwords reach them through files or the environment, never
// through argv.

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func run(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, out, stderr.String())
	}
	return out
}

const poplibScript = `
import os, poplib, ssl, sys
mode, port, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "ssl":
    p = poplib.POP3_SSL("127.0.0.1", port, context=ctx)
else:
    p = poplib.POP3("127.0.0.1", port)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps, caps
    p.stls(context=ctx)
caps = p.capa()
assert "USER" in caps and "STLS" not in caps, caps
p.user(os.environ["POP3_USER"])
p.pass_(os.environ["POP3_PASS"])
count, size = p.stat()
print("STAT", count, size)
for l in p.uidl()[1]:
    print("UIDL", l.decode())
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    body = b"".join(l + b"\r\n" for l in lines)
    assert len(body) == octets, (len(body), octets)
    sys.stdout.write("MSG %d %s\n" % (i, body.hex()))
p.dele(1)
p.quit()
`

func TestPythonPoplib(t *testing.T) {
	py := testutil.Tool(t, "python3", "python3")
	for _, mode := range []string{"ssl", "stls"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			for _, s := range samples {
				e.deliver(s)
			}
			addr := e.tlsAddr
			if mode == "stls" {
				addr = e.plainAddr
			}
			out := run(t, []string{"POP3_USER=" + alice, "POP3_PASS=" + alicePass}, py, "-c", poplibScript, mode, port(addr), e.ca.RootFile)
			var msgs []string
			var total int
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				f := strings.Fields(l)
				switch f[0] {
				case "MSG":
					b := make([]byte, len(f[2])/2)
					fmt.Sscanf(f[2], "%x", &b)
					msgs = append(msgs, string(b))
				case "STAT":
					fmt.Sscan(f[2], &total)
				}
			}
			want := 0
			for i, s := range samples {
				want += len(wireForm(s))
				if i >= len(msgs) || msgs[i] != wireForm(s) {
					t.Fatalf("message %d via poplib differs:\n%s", i+1, out)
				}
			}
			if total != want {
				t.Errorf("STAT size %d, want %d", total, want)
			}
			if got := e.inboxUIDs(); len(got) != len(samples)-1 {
				t.Errorf("poplib DELE 1 + QUIT left %d messages", len(got))
			}
		})
	}
}

func TestCurl(t *testing.T) {
	curl := testutil.Tool(t, "curl", "curl")
	e := newEnv(t)
	e.deliver(samples[1])
	e.deliver(samples[2])
	netrc := filepath.Join(t.TempDir(), "netrc")
	if err := os.WriteFile(netrc, []byte("machine 127.0.0.1 login "+alice+" password \""+alicePass+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"-sS", "--max-time", "30", "--cacert", e.ca.RootFile, "--netrc-file", netrc}
	list := run(t, nil, curl, append(common, "pop3s://127.0.0.1:"+port(e.tlsAddr)+"/")...)
	wantList := fmt.Sprintf("1 %d\r\n2 %d\r\n", len(wireForm(samples[1])), len(wireForm(samples[2])))
	if string(list) != wantList {
		t.Errorf("curl pop3s LIST = %q, want %q", list, wantList)
	}
	for i, url := range []string{"pop3s://127.0.0.1:" + port(e.tlsAddr) + "/1", "pop3://127.0.0.1:" + port(e.plainAddr) + "/2"} {
		args := append(slices.Clone(common), url)
		if strings.HasPrefix(url, "pop3:") {
			args = append(args, "--ssl-reqd")
		}
		got := run(t, nil, curl, args...)
		if want := wireForm(samples[i+1]); string(got) != want {
			t.Errorf("curl %s:\n got %q\nwant %q", url, got, want)
		}
	}
	// Without --ssl-reqd curl does not use STLS and must not get in.
	cmd := exec.Command(curl, append(slices.Clone(common), "pop3://127.0.0.1:"+port(e.plainAddr)+"/1")...)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("curl logged in over plaintext: %q", out)
	}
}

func TestFetchmail(t *testing.T) {
	fm := testutil.Tool(t, "fetchmail", "fetchmail")
	e := newEnv(t)
	e.deliver("Subject: first\r\n\r\n.dot line\r\n")
	e.deliver("Subject: second\n\nbare lf\n")
	dir := t.TempDir()
	mbox := filepath.Join(dir, "mbox")
	ids := filepath.Join(dir, "fetchids")
	rc := func(keep bool) string {
		p := filepath.Join(dir, "fetchmailrc")
		k := "keep"
		if !keep {
			k = "nokeep fetchall"
		}
		conf := fmt.Sprintf(`set no syslog
poll 127.0.0.1 service %s protocol pop3 uidl
  user "%s" there with password "%s" is "root" here
  ssl sslcertck sslcertfile "%s" sslcommonname "mail.example.com"
  %s
  mda "cat >> %s"
`, port(e.tlsAddr), alice, alicePass, e.ca.RootFile, k, mbox)
		if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fetch := func(keep bool) (int, string) {
		cmd := exec.Command(fm, "-f", rc(keep), "-i", ids, "--nodetach", "-v")
		cmd.Env = append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
		out, err := cmd.CombinedOutput()
		// Exit 1 means "no mail"; anything else is a failure.
		if err != nil {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("fetchmail: %v\n%s", err, out)
			}
		}
		b, _ := os.ReadFile(mbox)
		return strings.Count(string(b), "Subject: "), string(out)
	}
	n, out := fetch(true)
	if n != 2 {
		t.Fatalf("keep run 1 fetched %d messages:\n%s", n, out)
	}
	b, _ := os.ReadFile(mbox)
	if !strings.Contains(string(b), "\n.dot line") || !strings.Contains(string(b), "bare lf") {
		t.Errorf("fetched content:\n%s", b)
	}
	if n, out = fetch(true); n != 2 {
		t.Fatalf("keep run 2 (UIDL seen) fetched again: %d\n%s", n, out)
	}
	e.deliver("Subject: third\r\n\r\n3\r\n")
	if n, out = fetch(true); n != 3 {
		t.Fatalf("keep run 3 after a delivery: %d\n%s", n, out)
	}
	if got := e.inboxUIDs(); len(got) != 3 {
		t.Fatalf("keep mode deleted mail: %v", got)
	}
	if n, out = fetch(false); len(e.inboxUIDs()) != 0 {
		t.Fatalf("nokeep run left %v (fetched %d)\n%s", e.inboxUIDs(), n, out)
	}
}

func TestGetmail(t *testing.T) {
	gm := testutil.Tool(t, "getmail", "getmail6")
	e := newEnv(t)
	e.deliver("Subject: one\r\n\r\n.1\r\n")
	e.deliver("Subject: two\r\n\r\n2\r\n")
	dir := t.TempDir()
	md := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(md, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// getmail refuses to deliver as root; as root it delivers as nobody,
	// which must be able to reach and write the Maildir.
	userLine := ""
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, d := range []string{filepath.Dir(dir), dir} {
			os.Chmod(d, 0o755)
		}
		filepath.WalkDir(md, func(p string, _ fs.DirEntry, _ error) error { return os.Chown(p, uid, gid) })
		userLine = "user = nobody\n"
	}
	rc := filepath.Join(dir, "getmailrc")
	conf := fmt.Sprintf(`[retriever]
type = SimplePOP3SSLRetriever
server = 127.0.0.1
port = %s
username = %s
password = %s
ca_certs = %s

[destination]
type = Maildir
path = %s/
%s
[options]
read_all = false
delete = false
verbose = 2
`, port(e.tlsAddr), alice, alicePass, e.ca.RootFile, md, userLine)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		ents, _ := os.ReadDir(filepath.Join(md, "new"))
		return len(ents)
	}
	out := run(t, nil, gm, "--getmaildir", dir, "--rcfile", rc)
	if count() != 2 {
		t.Fatalf("getmail run 1: %d messages\n%s", count(), out)
	}
	out = run(t, nil, gm, "--getmaildir", dir, "--rcfile", rc)
	if count() != 2 {
		t.Fatalf("getmail run 2 fetched seen messages again: %d\n%s", count(), out)
	}
	e.deliver("Subject: three\r\n\r\n3\r\n")
	out = run(t, nil, gm, "--getmaildir", dir, "--rcfile", rc)
	if count() != 3 {
		t.Fatalf("getmail run 3: %d\n%s", count(), out)
	}
	ents, _ := os.ReadDir(filepath.Join(md, "new"))
	found := false
	for _, en := range ents {
		b, _ := os.ReadFile(filepath.Join(md, "new", en.Name()))
		found = found || bytes.Contains(b, []byte("Subject: one")) && bytes.Contains(b, []byte("\n.1\n"))
	}
	if !found {
		t.Error("message with a leading dot not delivered intact")
	}
}
