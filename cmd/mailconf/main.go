// Command mailconf serves mail, publishes the settings mail clients
// understand, and probes that they work. See README.md and SPEC.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"mailconf/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `usage:
  mailconf serve        [--config FILE] [--log-format text|json]
  mailconf user add     ADDRESS [--password-stdin]
  mailconf user passwd  ADDRESS [--password-stdin]
  mailconf user del     ADDRESS
  mailconf user list    [--json]
  mailconf queue        list | retry ID | delete ID
  mailconf probe        ADDRESS [--password-stdin] [--json] [--resolver HOST:PORT] [--ca FILE] [--timeout DURATION]
  mailconf dns          [DOMAIN ...] [--check] [--resolver HOST:PORT]
  mailconf check-config [--config FILE]
  mailconf version

Every command accepts --config FILE; without it $MAILCONF_CONFIG, else
./mailconf.toml if present, else the embedded default.
`

// Exit statuses (SPEC §2).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches a command line; it is main without the process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "mailconf %s\n", version)
		return exitOK
	case "help", "--help", "-h", "-help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	handler, ok := commands()[cmd]
	if !ok {
		fmt.Fprintf(stderr, "mailconf: unknown command %q\n%s", cmd, usage)
		return exitUsage
	}
	configFlag, rest, err := extractConfigFlag(rest)
	if err != nil {
		fmt.Fprintf(stderr, "mailconf %s: %v\n", cmd, err)
		return exitUsage
	}
	cfg, err := config.Load(config.Resolve(configFlag))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	return handler(ctx, env{cfg: cfg, stdin: stdin, stdout: stdout, stderr: stderr}, rest)
}

// env is what every command receives.
type env struct {
	cfg    *config.Config
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

type command func(ctx context.Context, e env, args []string) int

func commands() map[string]command {
	return map[string]command{
		"serve": runServe,
		"user": func(ctx context.Context, e env, args []string) int {
			return runUser(ctx, e.cfg, args, e.stdin, e.stdout, e.stderr)
		},
		"queue": func(ctx context.Context, e env, args []string) int {
			return runQueue(ctx, e.cfg, args, e.stdout, e.stderr)
		},
		"probe": func(ctx context.Context, e env, args []string) int {
			return runProbe(ctx, e.cfg, args, e.stdin, e.stdout, e.stderr)
		},
		"dns": func(ctx context.Context, e env, args []string) int {
			return runDNS(ctx, e.cfg, args, e.stdout, e.stderr)
		},
		"check-config": func(_ context.Context, e env, args []string) int {
			if len(args) > 0 {
				fmt.Fprintf(e.stderr, "mailconf check-config: unexpected argument %q\n", args[0])
				return exitUsage
			}
			fmt.Fprintf(e.stdout, "config: %s: ok (%d domain(s), hostname %s)\n", e.cfg.Source, len(e.cfg.Domains), e.cfg.Hostname)
			return exitOK
		},
	}
}

// extractConfigFlag removes --config FILE / --config=FILE (one or two
// dashes) from anywhere in args.
func extractConfigFlag(args []string) (string, []string, error) {
	var path string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		switch {
		case a == "--config" || a == "-config":
			if i+1 >= len(args) {
				return "", nil, errors.New("--config needs a file name")
			}
			path = args[i+1]
			i++
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			path = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return path, rest, nil
}

// parseInterleaved parses flags that may stand before, between or after
// positional arguments ("probe ADDR --json"), which flag.Parse alone does
// not allow.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// parseSub parses a subcommand's flags (anywhere on the line) and checks
// that it got want positional arguments. done reports that the command is
// finished (help was asked for, or the usage was wrong) with status code.
func parseSub(fs *flag.FlagSet, args []string, want int, name, usage string, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, usage)
		return nil, exitOK, true
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailconf %s: %v\n%s\n", name, err, usage)
		return nil, exitUsage, true
	}
	if len(pos) != want {
		fmt.Fprintf(stderr, "mailconf %s: want %d argument(s), got %d\n%s\n", name, want, len(pos), usage)
		return nil, exitUsage, true
	}
	return pos, exitOK, false
}
