package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/drepo-dev/drepo/manifests"
)

// readPasswordTwice asks for a password on the terminal without echo, and again to confirm.
// Echo goes off before the prompt shows, so nothing typed after the prompt can be echoed.
func readPasswordTwice(e *env) (string, error) {
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("htpasswd: terminal: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("htpasswd: terminal: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	in := bufio.NewReader(os.Stdin)
	var pws [2]string
	for i, prompt := range []string{"Password: ", "Again: "} {
		fmt.Fprint(e.stderr, prompt)
		line, err := in.ReadString('\n')
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", fmt.Errorf("htpasswd: reading the password: %w", err)
		}
		pws[i] = strings.TrimRight(line, "\r\n")
	}
	if pws[0] != pws[1] {
		return "", usageErrorf("the passwords do not match")
	}
	return pws[0], nil
}

func htpasswdCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "htpasswd",
		Usage:     "add or update a user in an htpasswd file (bcrypt) for drepo serve",
		ArgsUsage: "FILE USER",
		Description: `Reads the password from the first line of standard input (or from --password-env VAR),
never from the command line, and writes FILE atomically (mode 0600), keeping other users.
The format is Apache's (htpasswd -B), so Apache can use the same file.

Examples:
   echo "$PASS" | drepo htpasswd /etc/drepo/htpasswd drepo
   DAV_PW=secret drepo htpasswd --password-env DAV_PW users.htpasswd admin`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "password-env", Usage: "read the password from environment variable `VAR`"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageErrorf("htpasswd needs FILE and USER")
			}
			file, user := c.Args().Get(0), c.Args().Get(1)
			if user == "" || strings.ContainsAny(user, ":\n\r") {
				return usageErrorf("user name %q: must be non-empty without ':' or newlines", user)
			}
			var pw string
			if v := c.String("password-env"); v != "" {
				var ok bool
				if pw, ok = os.LookupEnv(v); !ok {
					return usageErrorf("--password-env: %s is not set", v)
				}
			} else if term.IsTerminal(int(os.Stdin.Fd())) {
				// On a terminal: prompt on stderr, no echo, typed twice.
				var err error
				if pw, err = readPasswordTwice(e); err != nil {
					return err
				}
			} else {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && line == "" {
					return usageErrorf("no password on standard input")
				}
				pw = strings.TrimRight(line, "\r\n")
			}
			if pw == "" || len(pw) > 72 {
				return usageErrorf("password must be 1 to 72 bytes (bcrypt's limit)")
			}
			hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
			if err != nil {
				return err
			}
			old, err := os.ReadFile(file)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			var out bytes.Buffer
			for _, l := range strings.Split(string(old), "\n") {
				if l != "" && !strings.HasPrefix(l, user+":") {
					out.WriteString(l + "\n")
				}
			}
			fmt.Fprintf(&out, "%s:%s\n", user, hash)
			if err := manifests.WriteFileAtomic(file, out.Bytes(), 0o600); err != nil {
				return err
			}
			e.log.Info("user written", "file", file, "user", user)
			return nil
		},
	}
}
