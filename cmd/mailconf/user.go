package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"mailconf/autoconfig"
	"mailconf/config"
	"mailconf/mailserver/accounts"
	"mailconf/mailserver/store"
)

const userUsage = `usage: mailconf user add ADDRESS [--password-stdin]
       mailconf user passwd ADDRESS [--password-stdin]
       mailconf user del ADDRESS
       mailconf user list [--json]`

// userJSON is one line of `user list --json`.
type userJSON struct {
	Address string    `json:"address"`
	Domain  string    `json:"domain"`
	Created time.Time `json:"created"`
}

// runUser manages accounts in cfg's data directory. It may run next to a
// live server: the store serializes writers across processes.
func runUser(ctx context.Context, cfg *config.Config, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, userUsage)
		return exitUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var passwordStdin, asJSON *bool
	switch sub {
	case "add", "passwd":
		passwordStdin = fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	case "del":
	case "list":
		asJSON = fs.Bool("json", false, "print JSON")
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, userUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mailconf user: unknown subcommand %q\n%s\n", sub, userUsage)
		return exitUsage
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	pos, code, done := parseSub(fs, args[1:], wantArgs, "user "+sub, userUsage, stdout, stderr)
	if done {
		return code
	}
	var address string
	if wantArgs == 1 {
		address = pos[0]
		if _, err := autoconfig.ParseAddress(address); err != nil && sub == "add" {
			fmt.Fprintf(stderr, "mailconf user add: %v\n", err)
			return exitUsage
		}
	}

	var password string
	if passwordStdin != nil {
		var code int
		if password, code = readNewPassword(stdin, stderr, *passwordStdin, sub); code != exitOK {
			return code
		}
	}

	st, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf user %s: %v\n", sub, err)
		return exitFailure
	}
	defer st.Close()
	m := accounts.NewManager(st, cfg)

	switch sub {
	case "add":
		acct, err := m.Add(ctx, address, password)
		if err != nil {
			fmt.Fprintf(stderr, "mailconf user add: %v%s\n", err, hint(err))
			return exitFailure
		}
		fmt.Fprintf(stdout, "added %s (mailboxes INBOX, Sent, Drafts, Trash, Junk, Archive)\n", acct.Address)
	case "passwd":
		if err := m.SetPassword(ctx, address, password); err != nil {
			fmt.Fprintf(stderr, "mailconf user passwd: %v%s\n", err, hint(err))
			return exitFailure
		}
		fmt.Fprintf(stdout, "password changed for %s\n", strings.ToLower(address))
	case "del":
		if err := m.Delete(ctx, address); err != nil {
			fmt.Fprintf(stderr, "mailconf user del: %v%s\n", err, hint(err))
			return exitFailure
		}
		fmt.Fprintf(stdout, "deleted %s and all its mail\n", strings.ToLower(address))
	case "list":
		list, err := m.List(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "mailconf user list: %v\n", err)
			return exitFailure
		}
		if *asJSON {
			out := make([]userJSON, 0, len(list))
			for _, a := range list {
				out = append(out, userJSON{Address: a.Address, Domain: a.Domain, Created: a.Created})
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(out); err != nil {
				fmt.Fprintf(stderr, "mailconf user list: %v\n", err)
				return exitFailure
			}
			return exitOK
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tCREATED")
		for _, a := range list {
			fmt.Fprintf(tw, "%s\t%s\n", a.Address, a.Created.Format(time.RFC3339))
		}
		tw.Flush()
	}
	return exitOK
}

// hint adds the fix to an error line.
func hint(err error) string {
	switch {
	case errors.Is(err, store.ErrExists):
		return "; use `mailconf user passwd` to change its password"
	case errors.Is(err, store.ErrNoAccount):
		return "; `mailconf user list` shows the accounts"
	case errors.Is(err, accounts.ErrNotServed):
		return "; add a [[domain]] for it to the config"
	}
	return ""
}

// readNewPassword gets the password for add/passwd: the first line of
// stdin with --password-stdin, else typed twice at a terminal without
// echo. The password never reaches argv, logs or error text.
func readNewPassword(stdin io.Reader, stderr io.Writer, fromStdin bool, sub string) (string, int) {
	if fromStdin {
		line, err := readPasswordLine(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "mailconf user %s: --password-stdin: %v\n", sub, err)
			return "", exitUsage
		}
		return line, exitOK
	}
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(stderr, "mailconf user %s: standard input is not a terminal; pipe the password in with --password-stdin\n", sub)
		return "", exitUsage
	}
	fmt.Fprint(stderr, "Password: ")
	p1, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf user %s: reading the password: %v\n", sub, err)
		return "", exitFailure
	}
	fmt.Fprint(stderr, "Repeat password: ")
	p2, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf user %s: reading the password: %v\n", sub, err)
		return "", exitFailure
	}
	if string(p1) != string(p2) {
		fmt.Fprintf(stderr, "mailconf user %s: the passwords do not match; nothing changed\n", sub)
		return "", exitFailure
	}
	if len(p1) == 0 {
		fmt.Fprintf(stderr, "mailconf user %s: empty password; nothing changed\n", sub)
		return "", exitFailure
	}
	return string(p1), exitOK
}
