package imap

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailconf/internal/testutil"
)

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

const pythonClient = `
import imaplib, os, ssl, sys
ctx = ssl.create_default_context(cafile=os.environ["CA"])
host, port = "127.0.0.1", int(os.environ["PORT"])
if os.environ["MODE"] == "tls":
    m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
else:
    m = imaplib.IMAP4(host, port)
    if "LOGINDISABLED" not in m.capabilities:
        sys.exit("no LOGINDISABLED before STARTTLS: %r" % (m.capabilities,))
    try:
        m.login(os.environ["USER"], os.environ["PASS"])
        sys.exit("LOGIN accepted before STARTTLS")
    except imaplib.IMAP4.error:
        pass
    m.starttls(ssl_context=ctx)
m.login(os.environ["USER"], os.environ["PASS"])
msg = b"From: py@example.org\r\nSubject: from python " + os.environ["MODE"].encode() + b"\r\n\r\nhello from imaplib\r\n"
typ, data = m.append("INBOX", r"(\Flagged)", None, msg)
assert typ == "OK", (typ, data)
typ, data = m.select("INBOX")
assert typ == "OK", (typ, data)
typ, data = m.search(None, "SUBJECT", '"from python ' + os.environ["MODE"] + '"')
nums = data[0].split()
assert len(nums) == 1, data
typ, data = m.fetch(nums[0], "(FLAGS BODY.PEEK[])")
assert data[0][1] == msg, data
assert b"\\Flagged" in data[0][0], data
typ, data = m.store(nums[0], "+FLAGS", r"(\Deleted)")
assert typ == "OK", (typ, data)
typ, data = m.expunge()
assert typ == "OK" and data[0] == nums[0], (typ, data)
typ, data = m.list()
assert typ == "OK" and any(b"Sent" in d for d in data), data
m.logout()
print("python imaplib ok")
`

func TestPythonImaplib(t *testing.T) {
	py := testutil.Tool(t, "python3", "python3")
	e := newEnv(t)
	for _, mode := range []string{"tls", "starttls"} {
		p := port(e.tlsAddr)
		if mode == "starttls" {
			p = port(e.addr)
		}
		cmd := exec.Command(py, "-c", pythonClient)
		cmd.Env = append(os.Environ(), "CA="+e.ca.RootFile, "PORT="+p, "MODE="+mode, "USER="+alice, "PASS="+alicePass)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "python imaplib ok") {
			t.Errorf("imaplib %s: %v\n%s", mode, err, out)
		}
	}
}

func netrc(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "netrc")
	if err := os.WriteFile(p, []byte("machine 127.0.0.1 login "+alice+" password "+alicePass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCurl(t *testing.T) {
	curl := testutil.Tool(t, "curl", "curl")
	e := newEnv(t)
	c := e.alice()
	msg := "From: curl@example.org\r\nSubject: for curl\r\n\r\nfetched by curl\r\n"
	appendMsg(t, c, "INBOX", msg, nil)
	rc := netrc(t)
	for _, url := range []string{
		"imaps://127.0.0.1:" + port(e.tlsAddr) + "/INBOX;UID=1",
		"imap://127.0.0.1:" + port(e.addr) + "/INBOX;UID=1",
	} {
		out, err := exec.Command(curl, "-sS", "--ssl-reqd", "--cacert", e.ca.RootFile, "--netrc-file", rc, url).CombinedOutput()
		if err != nil || string(out) != msg {
			t.Errorf("curl %s: %v\n%q", url, err, out)
		}
	}
	out, err := exec.Command(curl, "-sS", "--cacert", e.ca.RootFile, "--netrc-file", rc, "imaps://127.0.0.1:"+port(e.tlsAddr)+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Archive") || !strings.Contains(string(out), "INBOX") {
		t.Errorf("curl LIST: %v\n%s", err, out)
	}
	// Plain imap:// without TLS must not be able to log in.
	out, err = exec.Command(curl, "-sS", "--netrc-file", rc, "imap://127.0.0.1:"+port(e.addr)+"/INBOX;UID=1").CombinedOutput()
	if err == nil || strings.Contains(string(out), "fetched by curl") {
		t.Errorf("curl without TLS fetched mail: %s", out)
	}
}

// maildirFiles maps "folder/subject" to the file bytes of a Maildir tree.
func maildirFiles(t *testing.T, root string) map[string][]byte {
	out := map[string][]byte{}
	filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		dir := filepath.Base(filepath.Dir(p))
		if dir != "cur" && dir != "new" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		folder, _ := filepath.Rel(root, filepath.Dir(filepath.Dir(p)))
		out[folder+"|"+subjectOf(b)] = b
		return nil
	})
	return out
}

func subjectOf(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Subject: ") {
			return strings.TrimSpace(strings.TrimPrefix(l, "Subject: "))
		}
	}
	return ""
}

// serverFiles maps "folder|subject" to BODY[] of every message on the
// server.
func serverFiles(t *testing.T, e *env) map[string][]byte {
	c := e.alice()
	defer c.Logout()
	boxes, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	body := &goimap.FetchItemBodySection{Peek: true}
	for _, b := range boxes {
		sel, err := c.Select(b.Mailbox, &goimap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if sel.NumMessages == 0 {
			continue
		}
		msgs, err := c.Fetch(goimap.SeqSet{goimap.SeqRange{Start: 1, Stop: 0}}, &goimap.FetchOptions{BodySection: []*goimap.FetchItemBodySection{body}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			data := m.FindBodySection(body)
			out[b.Mailbox+"|"+subjectOf(data)] = data
		}
	}
	return out
}

func TestMbsyncRoundTrip(t *testing.T) {
	mbsync := testutil.Tool(t, "mbsync", "isync")
	e := newEnv(t)
	c := e.alice()
	for _, n := range []string{"Work", "Work/Projects", "Lists/Go"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}
	serverMsg := func(folder string, i int) {
		appendMsg(t, c, folder, fmt.Sprintf("From: s%d@example.org\r\nSubject: server %s %d\r\nMessage-ID: <s%d@x>\r\n\r\nline one\r\nline two %d\r\n", i, folder, i, i, i), nil)
	}
	serverMsg("INBOX", 1)
	serverMsg("INBOX", 2)
	serverMsg("Work/Projects", 3)
	serverMsg("Lists/Go", 4)

	dir := t.TempDir()
	local := filepath.Join(dir, "mail")
	os.MkdirAll(local, 0o700)
	cfg := fmt.Sprintf(`IMAPAccount test
Host localhost
Port %s
User %s
Pass %s
SSLType IMAPS
CertificateFile %s
AuthMechs PLAIN

IMAPStore remote
Account test

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Remove Both
Expunge Both
SyncState *
`, port(e.tlsAddr), alice, alicePass, e.ca.RootFile, local, local)
	cfgPath := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, mbsync, "-c", cfgPath, "-a").CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
	}
	run()

	// Down: every server message is in the Maildir, same bytes (Maildir
	// holds LF line ends; mbsync converts).
	srv := serverFiles(t, e)
	loc := maildirFiles(t, local)
	if len(srv) != 4 {
		t.Fatalf("server has %d messages", len(srv))
	}
	for k, want := range srv {
		got, ok := loc[k]
		if !ok {
			t.Errorf("not synced down: %s (local has %v)", k, sortedKeys(loc))
			continue
		}
		if !bytes.Equal(crlf(stripTUID(got)), want) {
			t.Errorf("%s differs:\nlocal  %q\nserver %q", k, got, want)
		}
	}

	// Up: a new local folder tree with messages, and a message added to an
	// existing folder.
	writeMaildir := func(folder, name, content string) {
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(local, folder, sub), 0o700)
		}
		if err := os.WriteFile(filepath.Join(local, folder, "new", name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeMaildir("Local", "1.1.host", "From: me@example.org\nSubject: local top\n\nfrom the maildir\n")
	writeMaildir("Local/Deep", "2.2.host", "From: me@example.org\nSubject: local deep\n\nnested folder\n")
	writeMaildir("Work/Projects", "3.3.host", "From: me@example.org\nSubject: local in projects\n\nbody\n")
	run()
	srv = serverFiles(t, e)
	loc = maildirFiles(t, local)
	for _, k := range []string{"Local|local top", "Local/Deep|local deep", "Work/Projects|local in projects"} {
		got, ok := srv[k]
		if !ok {
			t.Errorf("not synced up: %s (server has %v)", k, sortedKeys(srv))
			continue
		}
		if !bytes.Equal(stripTUID(got), crlf(loc[k])) {
			t.Errorf("%s differs after upload:\nserver %q\nlocal  %q", k, got, loc[k])
		}
	}
	if len(srv) != len(loc) {
		t.Errorf("server %d messages, maildir %d", len(srv), len(loc))
	}
	// A third run changes nothing.
	run()
	if again := serverFiles(t, e); len(again) != len(srv) {
		t.Errorf("third sync changed the server: %d -> %d", len(srv), len(again))
	}
}

// stripTUID removes the X-TUID header line mbsync adds to every message
// it propagates (its own bookkeeping, not a server change).
func stripTUID(b []byte) []byte {
	i := bytes.Index(b, []byte("\nX-TUID: "))
	if i < 0 {
		return b
	}
	j := bytes.IndexByte(b[i+1:], '\n')
	if j < 0 {
		return b
	}
	return append(append([]byte(nil), b[:i+1]...), b[i+1+j+1:]...)
}

func crlf(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

func sortedKeys(m map[string][]byte) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
