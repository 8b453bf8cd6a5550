package check

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"mailconf/autoconfig"
	"mailconf/probe/netguard"
	"mailconf/probe/report"
)

// FuzzHostileServer lets a server answer the probe with arbitrary bytes on
// every protocol and security mode: the check must end within its
// timeouts, never panic, and classify what it saw.
func FuzzHostileServer(f *testing.F) {
	for _, s := range []string{
		"* OK ready\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK done\r\n",
		"+OK ready\r\n+OK\r\nSTLS\r\n.\r\n",
		"220 hi\r\n250-x\r\n250 STARTTLS\r\n220 go\r\n",
		"\x16\x03\x01\x00\x05hello",
		"* BYE\r\n",
		"220-" + string(make([]byte, 3000)) + "\r\n",
		"",
	} {
		for mode := byte(0); mode < 6; mode++ {
			f.Add(mode, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, mode byte, script []byte) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.Write(script)
			c.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		protos := []autoconfig.Protocol{autoconfig.IMAP, autoconfig.POP3, autoconfig.SMTP}
		secs := []autoconfig.Security{autoconfig.StartTLS, autoconfig.TLS}
		ep := autoconfig.Endpoint{Protocol: protos[int(mode)%3], Host: "localhost", Security: secs[int(mode/3)%2],
			Port: ln.Addr().(*net.TCPAddr).Port}
		cfg := &Config{
			Dialer:   &netguard.Dialer{Policy: netguard.Policy{Unrestricted: true}, Timeout: time.Second},
			Timeouts: Timeouts{TLS: 300 * time.Millisecond, Greeting: 300 * time.Millisecond, Command: 300 * time.Millisecond, Auth: 300 * time.Millisecond, Endpoint: time.Second, InjectionWait: 20 * time.Millisecond},
			EHLOName: "probe.test",
			Address:  autoconfig.Address{Local: "a", Domain: "example.test"},
			Gate:     NewGate(protos, nil, protos),
		}
		done := make(chan Result, 1)
		go func() {
			done <- Check(context.Background(), cfg, Target{Endpoint: ep, IP: netip.MustParseAddr("127.0.0.1"), Username: "a@example.test", StepID: "e"}, report.NewRecorder(nil))
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("check of %+v did not end", ep)
		}
	})
}
