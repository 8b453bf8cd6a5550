//go:build !linux

package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// msgDirFD is the message directory; elsewhere than Linux bodies are read
// through os.Open.
type msgDirFD struct{ path string }

func openMsgDir(path string) (msgDirFD, error) { return msgDirFD{path: path}, nil }

func (d msgDirFD) close() error { return nil } // nothing held open

func (d msgDirFD) readBlob(name string, size int64, buf []byte) ([]byte, error) {
	f, err := os.Open(filepath.Join(d.path, name[:2], name))
	if errors.Is(err, os.ErrNotExist) {
		return buf, fmt.Errorf("store: body %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return buf, fmt.Errorf("store: open body: %w", err)
	}
	defer f.Close()
	if int64(cap(buf)) < size {
		buf = make([]byte, 0, size)
	}
	buf = buf[:size]
	if _, err := io.ReadFull(f, buf); err != nil {
		return buf[:0], fmt.Errorf("store: read body %s: %w", name, err)
	}
	return buf, nil
}
