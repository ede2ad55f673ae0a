module github.com/drepo-dev/drepo

go 1.26.0

require (
	aead.dev/minisign v0.3.0
	golang.org/x/sync v0.24.0
)

require (
	golang.org/x/crypto v0.13.0 // indirect
	golang.org/x/sys v0.12.0 // indirect
)
