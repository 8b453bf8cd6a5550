package queue

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"time"

	"mailconf/mailserver/store"
)

// bounce is one permanently failed recipient.
type bounce struct {
	rcpt string
	f    *failure
}

// field is one header field; a DSN is a list of them per block.
type field struct{ name, value string }

// cleanValue makes any text safe as a single header line.
func cleanValue(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' || r == '\t' || r == ' ' }), " ")
}

func writeFields(b *bytes.Buffer, fs []field) {
	for _, f := range fs {
		b.WriteString(f.name)
		b.WriteString(": ")
		b.WriteString(cleanValue(f.value))
		b.WriteString("\r\n")
	}
}

// buildDSN composes the RFC 3464 report: multipart/report with a human
// explanation, the message/delivery-status fields and the original header.
func buildDSN(hostname string, now time.Time, e store.QueueEntry, bounced []bounce, original []byte) ([]byte, error) {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)

	var text strings.Builder
	fmt.Fprintf(&text, "This is the mail system at %s.\r\n\r\n", hostname)
	text.WriteString("Your message could not be delivered to one or more recipients.\r\n")
	text.WriteString("It has been removed from the queue; no further attempts will be made.\r\n\r\n")
	for _, b := range bounced {
		fmt.Fprintf(&text, "<%s>: %s\r\n", b.rcpt, cleanValue(b.f.String()))
	}
	pw, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"text/plain; charset=utf-8"},
		"Content-Description": {"Notification"},
	})
	if err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	if _, err := pw.Write([]byte(text.String())); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}

	var status bytes.Buffer
	writeFields(&status, []field{
		{"Reporting-MTA", "dns; " + hostname},
		{"X-Mailconf-Queue-ID", fmt.Sprint(e.ID)},
		{"Arrival-Date", e.Created.Format(time.RFC1123Z)},
	})
	for _, b := range bounced {
		status.WriteString("\r\n")
		fs := []field{
			{"Final-Recipient", "rfc822; " + b.rcpt},
			{"Action", "failed"},
			{"Status", b.f.status},
		}
		if b.f.remoteMTA != "" {
			fs = append(fs, field{"Remote-MTA", "dns; " + b.f.remoteMTA})
		}
		if b.f.smtpReply {
			fs = append(fs, field{"Diagnostic-Code", "smtp; " + b.f.text})
		} else {
			fs = append(fs, field{"Diagnostic-Code", "x-mailconf; " + b.f.String()})
		}
		fs = append(fs, field{"Last-Attempt-Date", now.Format(time.RFC1123Z)})
		writeFields(&status, fs)
	}
	pw, err = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"message/delivery-status"},
		"Content-Description": {"Delivery report"},
	})
	if err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	if _, err := pw.Write(status.Bytes()); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}

	hdr := original
	if i := bytes.Index(original, []byte("\r\n\r\n")); i >= 0 {
		hdr = original[:i+2]
	}
	pw, err = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"text/rfc822-headers"},
		"Content-Description": {"Undelivered message header"},
	})
	if err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	if _, err := pw.Write(hdr); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("queue: dsn: %w", err)
	}

	var out bytes.Buffer
	from := mail.Address{Name: "Mail Delivery System", Address: "MAILER-DAEMON@" + hostname}
	to := mail.Address{Address: e.Sender}
	writeFields(&out, []field{
		{"From", from.String()},
		{"To", to.String()},
		{"Subject", "Undelivered Mail Returned to Sender"},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + hex.EncodeToString(rnd[:]) + "@" + hostname + ">"},
		{"Auto-Submitted", "auto-replied"},
		{"MIME-Version", "1.0"},
		{"Content-Type", mime.FormatMediaType("multipart/report", map[string]string{
			"report-type": "delivery-status", "boundary": mw.Boundary(),
		})},
	})
	out.WriteString("\r\n")
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

// sendDSN delivers a bounce for bounced to e's sender: into the INBOX when
// the sender has an account here, else through the queue with the null
// sender, so that a bounce itself never bounces.
func (q *Queue) sendDSN(ctx context.Context, e store.QueueEntry, bounced []bounce, original []byte) error {
	if e.Sender == "" {
		return nil
	}
	msg, err := buildDSN(q.cfg.Hostname, q.cfg.Now(), e, bounced, original)
	if err != nil {
		return err
	}
	in := store.Incoming{Raw: bytes.NewReader(msg), Date: q.cfg.Now(), Sender: ""}
	acct, err := q.st.AccountByAddress(ctx, e.Sender)
	switch {
	case err == nil:
		in.Local = []int64{acct.ID}
	case errors.Is(err, store.ErrNoAccount):
		in.Remote = []string{e.Sender}
	default:
		return fmt.Errorf("queue: dsn: %w", err)
	}
	res, err := q.st.Accept(ctx, in)
	if err != nil {
		return fmt.Errorf("queue: dsn: %w", err)
	}
	q.log.Info("queue DSN sent", "queue_id", e.ID, "to", e.Sender, "failed", len(bounced), "dsn_queue_id", res.QueueID)
	if res.QueueID != 0 {
		q.Wake()
	}
	return nil
}
