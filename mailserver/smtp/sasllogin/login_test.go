package sasllogin

import (
	"bytes"
	"errors"
	"testing"

	"github.com/emersion/go-sasl"
)

var errBad = errors.New("bad credentials")

func check(gotUser, gotPass *string) Authenticator {
	return func(u, p string) error {
		*gotUser, *gotPass = u, p
		if u == "alice@example.com" && p == "s3cret" {
			return nil
		}
		return errBad
	}
}

func TestPrompts(t *testing.T) {
	var u, p string
	s := NewServer(check(&u, &p))
	ch, done, err := s.Next(nil)
	if err != nil || done || !bytes.Equal(ch, []byte("Username:")) {
		t.Fatalf("first step = %q %v %v", ch, done, err)
	}
	ch, done, err = s.Next([]byte("alice@example.com"))
	if err != nil || done || !bytes.Equal(ch, []byte("Password:")) {
		t.Fatalf("second step = %q %v %v", ch, done, err)
	}
	_, done, err = s.Next([]byte("s3cret"))
	if err != nil || !done {
		t.Fatalf("third step = %v %v", done, err)
	}
	if u != "alice@example.com" || p != "s3cret" {
		t.Fatalf("authenticator got %q %q", u, p)
	}
	if _, _, err := s.Next([]byte("more")); !errors.Is(err, sasl.ErrUnexpectedClientResponse) {
		t.Fatalf("extra response: %v", err)
	}
}

func TestInitialResponseWithGoSASLClient(t *testing.T) {
	var u, p string
	s := NewServer(check(&u, &p))
	c := sasl.NewLoginClient("alice@example.com", "wrong")
	_, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	ch, done, err := s.Next(ir)
	if err != nil || done {
		t.Fatalf("after initial response: %v %v", done, err)
	}
	resp, err := c.Next(ch)
	if err != nil {
		t.Fatalf("go-sasl client rejects our prompt %q: %v", ch, err)
	}
	_, done, err = s.Next(resp)
	if !done || !errors.Is(err, errBad) {
		t.Fatalf("wrong password: done=%v err=%v", done, err)
	}
	if u != "alice@example.com" || p != "wrong" {
		t.Fatalf("authenticator got %q %q", u, p)
	}
}

func TestEmptyUsername(t *testing.T) {
	called := false
	s := NewServer(func(string, string) error { called = true; return nil })
	if _, _, err := s.Next([]byte{}); err != nil {
		t.Fatal(err)
	}
	_, done, err := s.Next([]byte{})
	if !done || !errors.Is(err, ErrEmptyUsername) || called {
		t.Fatalf("empty username: done=%v err=%v called=%v", done, err, called)
	}
}
