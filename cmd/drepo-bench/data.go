package main

import (
	"bufio"
	"io"
	"math/rand/v2"
	"os"
)

// writeRandomFile writes size bytes from a seeded ChaCha8 stream, in constant memory.
func writeRandomFile(path string, size int64, seed byte) error {
	return writeFrom(path, io.LimitReader(rand.NewChaCha8([32]byte{seed}), size))
}

// writeFrom writes what r reads to a new file at path, through a 1 MiB buffer.
func writeFrom(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := io.Copy(w, r); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeUpdatedFile writes the next version of the file at old: its bytes with 1 MiB of new
// ones inserted at 10 MiB and 4 MiB replaced at a third of it (what a point release of an
// image changes), in constant memory.
func writeUpdatedFile(path, old string, seed byte) error {
	in, err := os.Open(old)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	fresh := rand.NewChaCha8([32]byte{seed})
	at, replaced := min(int64(10<<20), fi.Size()), max(fi.Size()/3, int64(10<<20))
	parts := []io.Reader{
		io.NewSectionReader(in, 0, at),
		io.LimitReader(fresh, 1<<20),
		io.NewSectionReader(in, at, max(replaced-at, 0)),
		io.LimitReader(fresh, 4<<20),
		io.NewSectionReader(in, replaced+4<<20, max(fi.Size()-replaced-4<<20, 0)),
	}
	return writeFrom(path, io.MultiReader(parts...))
}
