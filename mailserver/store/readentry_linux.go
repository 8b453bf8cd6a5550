package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// msgDirFD is the message directory, open for openat: FETCH reads many
// small bodies in a row, and an *os.File per body (open, fstat, the
// File's allocations and cleanup, close) cost more than reading it.
type msgDirFD struct{ fd int }

func openMsgDir(path string) (msgDirFD, error) {
	fd, err := retryEINTR(func() (int, error) {
		return syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	})
	if err != nil {
		return msgDirFD{fd: -1}, fmt.Errorf("store: open message directory: %w", err)
	}
	return msgDirFD{fd: fd}, nil
}

func (d msgDirFD) close() error {
	if d.fd < 0 {
		return nil
	}
	return syscall.Close(d.fd)
}

// readBlob reads the first size bytes of a body file into buf, grown as
// needed, with three system calls and no allocation beyond buf.
func (d msgDirFD) readBlob(name string, size int64, buf []byte) ([]byte, error) {
	fd, err := retryEINTR(func() (int, error) {
		return syscall.Openat(d.fd, name[:2]+"/"+name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	})
	if errors.Is(err, syscall.ENOENT) {
		return buf, fmt.Errorf("store: body %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return buf, fmt.Errorf("store: open body: %w", &os.PathError{Op: "openat", Path: name, Err: err})
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
			return buf[:0], fmt.Errorf("store: read body %s: file has %d bytes, the index says %d", name, off, size)
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
