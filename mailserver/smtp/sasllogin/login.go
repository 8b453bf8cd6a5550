// Package sasllogin is the server side of the SASL LOGIN mechanism
// (draft-murchison-sasl-login). go-sasl ships only the client, and upstream
// go-smtp declines to add a server, but Outlook and older clients still
// offer nothing else next to PLAIN.
package sasllogin

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// Mechanism is the name advertised in AUTH / AUTHENTICATE capabilities.
const Mechanism = "LOGIN"

// The prompts are fixed by the draft; clients match them literally
// (go-sasl's own client insists on "Password:").
var (
	promptUsername = []byte("Username:")
	promptPassword = []byte("Password:")
)

// ErrEmptyUsername is returned when the client answers the username prompt
// with nothing: there is no account to check.
var ErrEmptyUsername = errors.New("sasllogin: empty username")

// Authenticator checks a username and password. Its error is passed back
// unchanged by Next, so a protocol layer can map it to a reply code.
type Authenticator func(username, password string) error

type server struct {
	authenticate Authenticator
	step         int
	username     string
}

// NewServer returns a sasl.Server for LOGIN. An initial response (AUTH LOGIN
// <base64 user>, as go-sasl's client and Thunderbird send) is taken as the
// username.
func NewServer(authenticate Authenticator) sasl.Server {
	return &server{authenticate: authenticate}
}

// Next implements sasl.Server.
func (s *server) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.step {
	case 0:
		if len(response) == 0 {
			s.step = 1
			return promptUsername, false, nil
		}
		s.username = string(response)
		s.step = 2
		return promptPassword, false, nil
	case 1:
		if len(response) == 0 {
			s.step = 3
			return nil, true, ErrEmptyUsername
		}
		s.username = string(response)
		s.step = 2
		return promptPassword, false, nil
	case 2:
		s.step = 3
		return nil, true, s.authenticate(s.username, string(response))
	default:
		return nil, true, sasl.ErrUnexpectedClientResponse
	}
}
