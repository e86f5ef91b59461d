package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasAnExample: every runnable command shows an example in
// --help, and every example parses: its command exists and its flags are
// the command's.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Name() != "help" {
			if c.Example == "" {
				t.Errorf("%s: no Example", c.CommandPath())
			}
			for _, args := range exampleCommands(c.Example) {
				root := NewRootCommand()
				cmd, rest, err := root.Find(args)
				if err != nil || cmd.CommandPath() == "arca" {
					t.Errorf("%s: example %q: no such command (%v)", c.CommandPath(), strings.Join(args, " "), err)
					continue
				}
				if err := cmd.ParseFlags(rest); err != nil {
					t.Errorf("%s: example %q: %v", c.CommandPath(), strings.Join(args, " "), err)
				}
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(NewRootCommand())
}

// exampleCommands splits an Example into arca invocations: continuation
// lines joined, comments, environment assignments and "&&"-chains handled.
func exampleCommands(ex string) [][]string {
	ex = strings.ReplaceAll(ex, "\\\n", " ")
	var out [][]string
	for _, line := range strings.Split(ex, "\n") {
		for _, part := range strings.Split(line, "&&") {
			words := shellWords(part)
			for len(words) > 0 && strings.Contains(words[0], "=") {
				words = words[1:]
			}
			if len(words) < 2 || words[0] != "arca" {
				continue
			}
			for i, w := range words {
				if w == "&" || w == ">" || w == "|" {
					words = words[:i]
					break
				}
			}
			out = append(out, words[1:])
		}
	}
	return out
}

// shellWords splits on blanks, keeping quoted strings, up to a # comment.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	in, quote, word := false, byte(0), false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && c == quote:
			in = false
		case in:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			in, quote, word = true, c, true
		case c == '#' && !word:
			i = len(s)
		case c == ' ' || c == '\t':
			if word {
				words = append(words, cur.String())
				cur.Reset()
				word = false
			}
		default:
			cur.WriteByte(c)
			word = true
		}
	}
	if word {
		words = append(words, cur.String())
	}
	return words
}

// TestCompletion: cobra's generator answers for the three shells.
func TestCompletion(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_arca", "zsh": "#compdef arca", "fish": "complete -c arca"} {
		out, err := runPlain("completion", shell)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("completion %s: %v (want %q in %d bytes)", shell, err, want, len(out))
		}
	}
}
