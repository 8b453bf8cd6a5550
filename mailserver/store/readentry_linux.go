package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// msgDirFD is the message directory, open for openat: FETCH reads many
// small bodies in a row, and an *os.File per body (open, fstat, the
// File's allocations and cleanup, close) cost more than reading it. It
// is an *os.File so that a second Close, or a read racing Close, gets
// os.ErrClosed instead of using a descriptor number the process may
// already have reused.
type msgDirFD struct{ f *os.File }

func openMsgDir(path string) (msgDirFD, error) {
	f, err := os.Open(path)
	if err != nil {
		return msgDirFD{}, fmt.Errorf("store: open message directory: %w", err)
	}
	return msgDirFD{f: f}, nil
}

func (d msgDirFD) close() error {
	if err := d.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}

// readBlob reads the first size bytes of a body file into buf, grown as
// needed: openat, pread and close, without a file object.
func (d msgDirFD) readBlob(name string, size int64, buf []byte) ([]byte, error) {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return buf, fmt.Errorf("store: message directory: %w", err)
	}
	fd := -1
	var oerr error
	// Control holds the directory open for the duration of the call.
	if err := rc.Control(func(dir uintptr) {
		fd, oerr = retryEINTR(func() (int, error) {
			return syscall.Openat(int(dir), name[:2]+"/"+name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		})
	}); err != nil {
		return buf, fmt.Errorf("store: message directory: %w", err)
	}
	if errors.Is(oerr, syscall.ENOENT) {
		return buf, fmt.Errorf("store: body %s: %w", name, ErrNotFound)
	}
	if oerr != nil {
		return buf, fmt.Errorf("store: open body: %w", &os.PathError{Op: "openat", Path: name, Err: oerr})
	}
	defer syscall.Close(fd)
	if int64(cap(buf)) < size {
		buf = make([]byte, 0, size)
	}
	buf = buf[:size]
	for off := 0; off < len(buf); {
		n, err := retryEINTR(func() (int, error) { return syscall.Pread(fd, buf[off:], int64(off)) })
		if err != nil {
			return buf[:0], fmt.Errorf("store: read body %s: %w", name, err)
		}
		if n == 0 {
			return buf[:0], fmt.Errorf("store: read body %s: file has %d bytes, the index says %d: %w", name, off, size, io.ErrUnexpectedEOF)
		}
		off += n
	}
	return buf, nil
}

func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}
