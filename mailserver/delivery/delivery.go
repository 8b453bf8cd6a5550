// Package delivery routes messages the SMTP listeners accept: recipients
// with a mailbox here go to their INBOX, every other recipient of submitted
// mail goes to the outbound queue, all in one durable store transaction
// before the client gets its 250. It implements smtp.Sink and
// smtp.Recipients, and Auth gives the listeners the shared authenticator.
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"mailconf/config"
	"mailconf/mailserver/smtp"
	"mailconf/mailserver/store"
)

// Signer adds a DKIM signature for a domain (dkim.Keys implements it).
type Signer interface {
	Has(domain string) bool
	Sign(ctx context.Context, domain string, msg []byte) ([]byte, error)
}

// Options are the optional parts of a Deliverer.
type Options struct {
	// DKIM signs submitted mail from served domains; nil: no signing.
	DKIM Signer
	// Wake is called after something was queued (queue.Queue.Wake).
	Wake   func()
	Logger *slog.Logger
	// Now stamps the internal date; nil means time.Now.
	Now func() time.Time
}

// Deliverer is the smtp.Sink and smtp.Recipients of the built-in server.
type Deliverer struct {
	st   *store.Store
	cfg  *config.Config
	opts Options
	log  *slog.Logger
}

var (
	_ smtp.Sink       = (*Deliverer)(nil)
	_ smtp.Recipients = (*Deliverer)(nil)
)

// New returns a Deliverer on st for cfg's served domains.
func New(st *store.Store, cfg *config.Config, opts Options) *Deliverer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Deliverer{st: st, cfg: cfg, opts: opts, log: opts.Logger.With("component", "delivery")}
}

// ErrNoRecipients is returned when none of a message's recipients can take
// it any more (all accounts deleted since RCPT).
var ErrNoRecipients = errors.New("delivery: no deliverable recipients")

func splitAddr(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", false
	}
	return addr[:i], strings.ToLower(addr[i+1:]), true
}

// Lookup implements smtp.Recipients: served tells whether the domain is one
// of ours, exists whether that mailbox has an account.
func (d *Deliverer) Lookup(ctx context.Context, addr string) (served, exists bool, err error) {
	_, domain, ok := splitAddr(addr)
	if !ok {
		return false, false, nil
	}
	if _, served = d.cfg.Domain(domain); !served {
		return false, false, nil
	}
	_, err = d.st.AccountByAddress(ctx, addr)
	switch {
	case err == nil:
		return true, true, nil
	case errors.Is(err, store.ErrNoAccount):
		return true, false, nil
	default:
		return true, false, fmt.Errorf("delivery: lookup %s: %w", addr, err)
	}
}

// Accept implements smtp.Sink. It returns only after the store committed
// the message for every recipient.
func (d *Deliverer) Accept(ctx context.Context, env smtp.Envelope, data []byte) error {
	var local []int64
	var remote []string
	for _, rcpt := range env.To {
		_, domain, ok := splitAddr(rcpt)
		if !ok {
			return fmt.Errorf("delivery: %s: malformed recipient %q", env.ID, rcpt)
		}
		if _, served := d.cfg.Domain(domain); !served {
			if !env.Submission {
				// The MX refuses foreign domains at RCPT; reaching here
				// would make us an open relay.
				return fmt.Errorf("delivery: %s: relay to %s from the MX refused", env.ID, rcpt)
			}
			remote = append(remote, rcpt)
			continue
		}
		acct, err := d.st.AccountByAddress(ctx, rcpt)
		if errors.Is(err, store.ErrNoAccount) {
			// RCPT checked the mailbox; it was deleted since. Nobody can
			// receive it, and queueing it would loop back to us.
			d.log.Warn("delivery recipient vanished", "id", env.ID, "rcpt", rcpt)
			continue
		}
		if err != nil {
			return fmt.Errorf("delivery: %s: %w", env.ID, err)
		}
		local = append(local, acct.ID)
	}
	if len(local) == 0 && len(remote) == 0 {
		return fmt.Errorf("delivery: %s: %w", env.ID, ErrNoRecipients)
	}
	if env.Submission && d.opts.DKIM != nil {
		if _, domain, ok := splitAddr(env.From); ok && d.opts.DKIM.Has(domain) {
			signed, err := d.opts.DKIM.Sign(ctx, domain, data)
			if err != nil {
				return fmt.Errorf("delivery: %s: %w", env.ID, err)
			}
			data = signed
		}
	}
	res, err := d.st.Accept(ctx, store.Incoming{
		Raw:    bytes.NewReader(data),
		Date:   d.opts.Now(),
		Local:  local,
		Sender: env.From,
		Remote: remote,
	})
	if err != nil {
		return fmt.Errorf("delivery: %s: %w", env.ID, err)
	}
	if res.QueueID != 0 {
		d.log.Info("delivery queued", "id", env.ID, "queue_id", res.QueueID, "rcpts", len(remote))
		if d.opts.Wake != nil {
			d.opts.Wake()
		}
	}
	return nil
}
