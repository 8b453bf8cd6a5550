package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"mailconf/config"
	"mailconf/mailserver/store"
)

// openStore opens cfg's store for a command that runs next to (or instead
// of) a live server; the error names data_dir, the setting to check.
func openStore(ctx context.Context, cfg *config.Config) (*store.Store, error) {
	st, err := store.Open(ctx, cfg.DataDir, store.Options{MessageSize: cfg.Limits.MessageSize})
	if err != nil {
		return nil, fmt.Errorf("%w (data_dir = %q)", err, cfg.DataDir)
	}
	return st, nil
}

// readPasswordLine reads --password-stdin's password: the first line of
// stdin without its line ending, so that it never reaches argv.
func readPasswordLine(stdin io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(stdin, 4096).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password line on standard input")
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("the password line is empty")
	}
	return line, nil
}
