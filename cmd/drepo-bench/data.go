package main

import (
	"bufio"
	"io"
	"math/rand/v2"
	"os"
)

// writeRandomFile writes size bytes from a seeded ChaCha8 stream, in constant memory.
func writeRandomFile(path string, size int64, seed byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{seed}), size); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
