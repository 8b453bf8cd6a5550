package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mailconf/config"
	"mailconf/mailserver/queue"
	"mailconf/mailserver/store"
)

const queueUsage = `usage: mailconf queue list [--json]
       mailconf queue retry ID
       mailconf queue delete ID`

// runQueue shows and manages the outbound queue in cfg's data directory.
// It may run next to a live server: the store serializes writers across
// processes, and the server picks up a retried entry within its poll
// interval.
func runQueue(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, queueUsage)
		return exitUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("queue "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var asJSON *bool
	wantArgs := 1
	switch sub {
	case "list":
		asJSON = fs.Bool("json", false, "print JSON")
		wantArgs = 0
	case "retry", "delete":
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, queueUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mailconf queue: unknown subcommand %q\n%s\n", sub, queueUsage)
		return exitUsage
	}
	pos, code, done := parseSub(fs, args[1:], wantArgs, "queue "+sub, queueUsage, stdout, stderr)
	if done {
		return code
	}
	var id int64
	if wantArgs == 1 {
		var err error
		id, err = strconv.ParseInt(pos[0], 10, 64)
		if err != nil || id <= 0 {
			fmt.Fprintf(stderr, "mailconf queue %s: %q is not a queue ID (a positive number from `mailconf queue list`)\n", sub, pos[0])
			return exitUsage
		}
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf queue %s: %v\n", sub, err)
		return exitFailure
	}
	defer st.Close()

	switch sub {
	case "list":
		es, err := queue.List(ctx, st)
		if err != nil {
			fmt.Fprintf(stderr, "mailconf queue list: %v\n", err)
			return exitFailure
		}
		if *asJSON {
			if es == nil {
				es = []store.QueueEntry{}
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(es); err != nil {
				fmt.Fprintf(stderr, "mailconf queue list: %v\n", err)
				return exitFailure
			}
			return exitOK
		}
		writeQueueTable(stdout, es)
		return exitOK
	case "retry":
		err = queue.Retry(ctx, st, id)
	case "delete":
		err = queue.Delete(ctx, st, id)
	}
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(stderr, "mailconf queue %s: no queue entry %d (see `mailconf queue list`)\n", sub, id)
		return exitFailure
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailconf queue %s: %v\n", sub, err)
		return exitFailure
	}
	if sub == "retry" {
		fmt.Fprintf(stdout, "queue entry %d is due now\n", id)
	} else {
		fmt.Fprintf(stdout, "queue entry %d deleted (no bounce sent)\n", id)
	}
	return exitOK
}

func writeQueueTable(w io.Writer, es []store.QueueEntry) {
	if len(es) == 0 {
		fmt.Fprintln(w, "the queue is empty")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUEUED\tNEXT ATTEMPT\tTRIES\tSIZE\tSENDER\tPENDING RECIPIENTS\tLAST ERROR")
	for _, e := range es {
		sender := e.Sender
		if sender == "" {
			sender = "<>"
		}
		pending := e.Pending()
		rcpts := strings.Join(pending, ",")
		if len(pending) != len(e.Recipients) {
			rcpts = fmt.Sprintf("%s (%d of %d)", rcpts, len(pending), len(e.Recipients))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", e.ID,
			e.Created.UTC().Format(time.RFC3339), e.NextAttempt.UTC().Format(time.RFC3339),
			e.Attempts, e.Size, sender, rcpts, oneLine(e.LastError, 80))
	}
	tw.Flush()
}

// oneLine keeps a table cell on one line and bounded.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}
