package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCommandsHelp: every command of the usage text is in commands, and
// each answers --help on stdout with exit status 0.
func TestCommandsHelp(t *testing.T) {
	for line := range strings.Lines(usage) {
		rest, ok := strings.CutPrefix(line, "  tagbridge ")
		if !ok {
			continue
		}
		words := strings.Fields(rest)
		cmd := words[0]
		if cmd == "certs" {
			cmd += " " + words[1]
		}
		if !slices.Contains(commands, cmd) {
			t.Errorf("usage names %q, which commands (man pages, completion) lacks", cmd)
		}
	}
	for _, cmd := range append(slices.Clone(commands), "certs") {
		var stdout, stderr bytes.Buffer
		code := run(append(strings.Fields(cmd), "--help"), &stdout, &stderr)
		if code != exitOK || !strings.HasPrefix(stdout.String(), "Usage: tagbridge "+cmd) || stderr.Len() > 0 {
			t.Errorf("tagbridge %s --help: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", cmd, code, stdout.String(), stderr.String())
		}
	}
}

func TestManPages(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	if code := run([]string{"man", dir}, &stderr, &stderr); code != exitOK {
		t.Fatalf("tagbridge man: exit %d: %s", code, stderr.String())
	}
	want := []string{"tagbridge.1"}
	for _, c := range commands {
		want = append(want, "tagbridge-"+strings.ReplaceAll(c, " ", "-")+".1")
	}
	entries, _ := os.ReadDir(dir)
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("man pages %q, want %q", got, want)
	}
	page, err := os.ReadFile(filepath.Join(dir, "tagbridge-certs-create.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{".SH NAME\ntagbridge\\-certs\\-create \\- write the agent's OPC UA certificate and key\n", ".SH OPTIONS\n", ".B \\-\\-days \\fIdays\\fR\nvalidity in days (default 730)\n"} {
		if !bytes.Contains(page, []byte(s)) {
			t.Errorf("tagbridge-certs-create.1 lacks %q:\n%s", s, page)
		}
	}
}

// TestBashCompletion runs the generated script in bash.
func TestBashCompletion(t *testing.T) {
	var script, stderr bytes.Buffer
	if code := run([]string{"completion", "bash"}, &script, &stderr); code != exitOK {
		t.Fatalf("tagbridge completion bash: exit %d: %s", code, stderr.String())
	}
	for _, c := range []struct{ words, want string }{
		{"tagbridge va", "validate"},
		{"tagbridge certs create --d", "--days --dir"},
		{"tagbridge completion z", "zsh"},
		{"tagbridge browse --sec", "--security"},
	} {
		words := strings.Fields(c.words)
		prog := script.String() + "\nCOMP_WORDS=(" + c.words + "); COMP_CWORD=" + string(rune('0'+len(words)-1)) + "; _tagbridge; echo \"${COMPREPLY[*]}\"\n"
		out, err := exec.CommandContext(t.Context(), "bash", "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Errorf("bash completion of %q: %q (%v), want %q", c.words, out, err, c.want)
		}
	}
}
