package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Shell completion asks drepo itself (--generate-bash-completion, urfave/cli's protocol),
// so the scripts stay right as commands and flags change.

const bashCompletion = `# bash completion for drepo (drepo completion bash)
_drepo() {
  local cur words
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == -* ]]; then
    words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD-1}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _drepo drepo
`

const zshCompletion = `#compdef drepo
# zsh completion for drepo (drepo completion zsh)
_drepo() {
  local -a opts
  local cur="${words[-1]}"
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[1]} ${words[@]:1:$#words-2} $cur --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[1]} ${words[@]:1:$#words-2} --generate-bash-completion 2>/dev/null)}")
  fi
  _describe 'values' opts
}
compdef _drepo drepo
`

func completionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `Examples:
   drepo completion bash > /etc/bash_completion.d/drepo
   drepo completion zsh > /usr/share/zsh/vendor-completions/_drepo
   drepo completion fish > /usr/share/fish/vendor_completions.d/drepo.fish`,
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				_, err := fmt.Fprint(e.stdout, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(e.stdout, zshCompletion)
				return err
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(e.stdout, s)
				return err
			}
			return usageErrorf("completion needs bash, zsh or fish")
		},
	}
}

func manCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (roff), made from the commands' own help",
		Description: `Examples:
   drepo man > /usr/share/man/man1/drepo.1
   drepo man | man -l -`,
		Action: func(c *cli.Context) error {
			s, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(e.stdout, s)
			return err
		},
	}
}
