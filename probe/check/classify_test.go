package check

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"mailconf/probe/report"
)

// TestClassifyUnreachable covers net.unreachable, which a hermetic test
// cannot provoke without a missing route (no packet may leave loopback):
// the error shapes are the ones net.Dialer returns.
func TestClassifyUnreachable(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENETUNREACH, syscall.EHOSTUNREACH} {
		err := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: errno}}
		if got := classifyNet(err, phaseConnect); got != report.NetUnreachable {
			t.Errorf("%v: got %s", errno, got)
		}
	}
}

func TestClassifyPhases(t *testing.T) {
	cases := []struct {
		err  error
		ph   phase
		want report.Code
	}{
		{io.EOF, phaseGreeting, report.NetClosedBeforeGreeting},
		{io.EOF, phaseTLS, report.NetClosedBeforeGreeting},
		{io.EOF, phaseDialogue, report.NetReset},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), phaseDialogue, report.NetReset},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: handshake failure")}, phaseTLS, "tls.alert_handshake_failure"},
		{&net.OpError{Op: "remote error", Err: errors.New("tls: protocol version not supported")}, phaseTLS, report.TLSProtocolVersion},
		{errLineTooLong, phaseDialogue, report.ProtoUnexpectedReply},
	}
	for _, c := range cases {
		if got := classifyNet(c.err, c.ph); got != c.want {
			t.Errorf("%v in phase %d: got %s, want %s", c.err, c.ph, got, c.want)
		}
	}
}

func TestPrintableEscapes(t *testing.T) {
	if got := printable("a\x00b\x1b[31m\xff"); got != `a\x00b\x1b[31m\xff` {
		t.Errorf("got %q", got)
	}
}
