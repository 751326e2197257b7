// Package helpgen makes tagbridge's man pages and shell completion scripts
// from the commands' own --help output, so that they cannot drift from the
// program.
package helpgen

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tagbridge/tagbridge/internal/cli"
)

// Program is what the pages and scripts are made from.
type Program struct {
	// Commands lists every subcommand, in usage order: each answers --help
	// with its synopsis, description and flags, and gets a man page
	// tagbridge-NAME(1) (spaces become dashes) and completion.
	Commands []string
	Usage    string // the main usage text, one "  tagbridge COMMAND  summary" a command
	Version  string
	// Run is the program's own dispatcher, run in process for each --help.
	Run func(args []string, stdout, stderr io.Writer) int
}

// help is a command's --help output taken apart.
type help struct {
	synopsis    []string // the usage lines, without "Usage: "
	description []string // paragraphs
	flags       []helpFlag
}

// helpFlag is one flag as flag.PrintDefaults prints it.
type helpFlag struct {
	name, arg, usage string
}

// dashed is how the synopses write a flag: -c, --days.
func (f helpFlag) dashed() string {
	if len(f.name) == 1 {
		return "-" + f.name
	}
	return "--" + f.name
}

// commandHelp runs "tagbridge CMD --help" in process and parses its output.
func (p Program) commandHelp(cmd string) (help, error) {
	var out bytes.Buffer
	args := append(strings.Fields(cmd), "--help")
	if code := p.Run(args, &out, &out); code != cli.ExitOK {
		return help{}, fmt.Errorf("tagbridge %s --help: exit status %d: %s", cmd, code, out.String())
	}
	return parseHelp(out.String()), nil
}

func parseHelp(text string) help {
	var h help
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	i := 0
	for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
		h.synopsis = append(h.synopsis, strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(lines[i], "Usage:")), "tagbridge "))
	}
	var para []string
	endPara := func() {
		if len(para) > 0 {
			h.description = append(h.description, strings.Join(para, " "))
			para = nil
		}
	}
	for ; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "  -"):
			endPara()
			name, rest, _ := strings.Cut(strings.TrimPrefix(line, "  -"), "\t")
			name, arg, _ := strings.Cut(strings.TrimSpace(name), " ")
			f := helpFlag{name: name, arg: arg, usage: strings.TrimSpace(rest)}
			for i+1 < len(lines) && strings.HasPrefix(lines[i+1], "    \t") {
				i++
				f.usage = strings.TrimSpace(f.usage + " " + strings.TrimSpace(lines[i]))
			}
			h.flags = append(h.flags, f)
		case strings.TrimSpace(line) == "":
			endPara()
		default:
			para = append(para, strings.TrimSpace(line))
		}
	}
	endPara()
	return h
}

// WriteManPages writes tagbridge(1) and tagbridge-COMMAND(1) into dir.
func (p Program) WriteManPages(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var main bytes.Buffer
	p.manHeader(&main, "tagbridge", "OPC UA to MQTT edge agent")
	main.WriteString(".SH SYNOPSIS\n.B tagbridge\n.I command\n[\\fIflags\\fR]\n.SH COMMANDS\n")
	for _, c := range p.Commands {
		h, err := p.commandHelp(c)
		if err != nil {
			return err
		}
		fmt.Fprintf(&main, ".TP\n.B tagbridge %s\n%s\n", roff(c), roff(p.usageSummary(c)))
		page, err := p.manPage(c, h)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "tagbridge-"+strings.ReplaceAll(c, " ", "-")+".1"), page, 0o644); err != nil {
			return err
		}
	}
	main.WriteString(".SH DESCRIPTION\n")
	for _, p := range []string{
		"tagbridge subscribes to tag values on PLCs over OPC UA and publishes every change to an MQTT broker.",
		"It runs as the systemd unit tagbridge.service under its own system user. Each command is described in its own page, listed below, and answers \\-\\-help.",
	} {
		fmt.Fprintf(&main, ".PP\n%s\n", p)
	}
	main.WriteString(".SH EXIT STATUS\n0 ok, 1 runtime failure, 78 bad configuration or usage (tagbridge status: 3 unhealthy). A panic exits with 2.\n")
	main.WriteString(".SH FILES\n")
	for _, f := range [][2]string{
		{cli.DefaultConfig, "the configuration"},
		{"/etc/default/tagbridge", "the service's environment: secrets named by *_env keys"},
		{"/etc/tagbridge/certs", "the agent's certificates and keys"},
		{"/var/lib/tagbridge/pki", "the OPC UA trust store (trusted/, issuers/, rejected/)"},
		{"/var/lib/tagbridge/spool", "values waiting for the broker"},
	} {
		fmt.Fprintf(&main, ".TP\n.I %s\n%s\n", roff(f[0]), roff(f[1]))
	}
	main.WriteString(".SH SEE ALSO\n")
	for i, c := range p.Commands {
		sep := ","
		if i == len(p.Commands)-1 {
			sep = ""
		}
		fmt.Fprintf(&main, ".BR tagbridge\\-%s (1)%s\n", strings.ReplaceAll(c, " ", "\\-"), sep)
	}
	return os.WriteFile(filepath.Join(dir, "tagbridge.1"), main.Bytes(), 0o644)
}

// manPage renders one command's help as a man page.
func (p Program) manPage(cmd string, h help) ([]byte, error) {
	if len(h.synopsis) == 0 {
		return nil, fmt.Errorf("tagbridge %s --help: no usage line", cmd)
	}
	var b bytes.Buffer
	p.manHeader(&b, "tagbridge-"+strings.ReplaceAll(cmd, " ", "-"), p.usageSummary(cmd))
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	for i, s := range h.synopsis {
		if i == 0 {
			s = "tagbridge " + s
		} else {
			s = "          " + s // under the command's first flag, as in --help
		}
		fmt.Fprintf(&b, "%s\n", roff(s))
	}
	b.WriteString(".fi\n")
	if len(h.description) > 0 {
		b.WriteString(".SH DESCRIPTION\n")
		for _, p := range h.description {
			fmt.Fprintf(&b, ".PP\n%s\n", roff(p))
		}
	}
	if len(h.flags) > 0 {
		b.WriteString(".SH OPTIONS\n")
		for _, f := range h.flags {
			fmt.Fprintf(&b, ".TP\n.B %s", roff(f.dashed()))
			if f.arg != "" {
				fmt.Fprintf(&b, " \\fI%s\\fR", roff(f.arg))
			}
			fmt.Fprintf(&b, "\n%s\n", roff(f.usage))
		}
	}
	b.WriteString(".SH SEE ALSO\n.BR tagbridge (1)\n")
	return b.Bytes(), nil
}

// usageSummary is a command's one-line description in the main usage text:
// the words from its description column, or the line below when the synopsis
// is long.
func (p Program) usageSummary(cmd string) string {
	lines := strings.Split(p.Usage, "\n")
	for i, line := range lines {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "tagbridge "+cmd)
		if !ok || (rest != "" && rest[0] != ' ') {
			continue
		}
		if len(line) > usageColumn && line[usageColumn-1] == ' ' {
			return strings.TrimSpace(line[usageColumn:])
		}
		if i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return "tagbridge " + cmd
}

// usageColumn is where the descriptions start in the main usage text.
const usageColumn = 33

func (p Program) manHeader(b *bytes.Buffer, name, summary string) {
	fmt.Fprintf(b, ".TH %s 1 \"\" \"tagbridge %s\" \"User Commands\"\n", strings.ToUpper(roff(name)), roff(p.Version))
	fmt.Fprintf(b, ".SH NAME\n%s \\- %s\n", roff(name), roff(summary))
}

// roff escapes text for a man page line: backslashes, minus signs, and a
// leading dot or quote that would read as a request.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, "-", `\-`).Replace(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// Completion writes the completion script for shell, bash or zsh, to w.
func (p Program) Completion(w io.Writer, shell string) error {
	helps := map[string]help{}
	for _, c := range p.Commands {
		h, err := p.commandHelp(c)
		if err != nil {
			return err
		}
		helps[c] = h
	}
	if shell == "bash" {
		p.writeBashCompletion(w, helps)
	} else {
		p.writeZshCompletion(w, helps)
	}
	return nil
}

// fileArgs are the flag placeholders that name a file or a directory.
var fileArgs = map[string]bool{"file": true, "directory": true}

func (p Program) topCommands() []string {
	var top []string
	for _, c := range p.Commands {
		first, _, _ := strings.Cut(c, " ")
		if len(top) == 0 || top[len(top)-1] != first {
			top = append(top, first)
		}
	}
	return top
}

func (p Program) writeBashCompletion(w io.Writer, helps map[string]help) {
	fmt.Fprintf(w, `# bash completion for tagbridge, from "tagbridge completion bash"
_tagbridge() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	if [ "$COMP_CWORD" -eq 1 ]; then
		COMPREPLY=($(compgen -W "%s" -- "$cur"))
		return
	fi
	local cmd=${COMP_WORDS[1]}
	[ "$cmd" != certs ] || cmd="certs ${COMP_WORDS[2]}"
	case "$cmd" in
	certs)
		COMPREPLY=($(compgen -W "create renew" -- "$cur"))
		return
		;;
	completion)
		COMPREPLY=($(compgen -W "bash zsh" -- "$cur"))
		return
		;;
	esac
	case "$prev" in
`, strings.Join(p.topCommands(), " "))
	var fileFlags, dirFlags []string
	seen := map[string]bool{}
	for _, c := range p.Commands {
		for _, f := range helps[c].flags {
			if seen[f.name] || !fileArgs[f.arg] {
				continue
			}
			seen[f.name] = true
			if f.arg == "directory" {
				dirFlags = append(dirFlags, "-"+f.name, "--"+f.name)
			} else {
				fileFlags = append(fileFlags, "-"+f.name, "--"+f.name)
			}
		}
	}
	if len(fileFlags) > 0 {
		fmt.Fprintf(w, "\t%s)\n\t\tCOMPREPLY=($(compgen -f -- \"$cur\"))\n\t\treturn\n\t\t;;\n", strings.Join(fileFlags, " | "))
	}
	if len(dirFlags) > 0 {
		fmt.Fprintf(w, "\t%s)\n\t\tCOMPREPLY=($(compgen -d -- \"$cur\"))\n\t\treturn\n\t\t;;\n", strings.Join(dirFlags, " | "))
	}
	fmt.Fprint(w, "\tesac\n\tcase \"$cmd\" in\n")
	for _, c := range p.Commands {
		var names []string
		for _, f := range helps[c].flags {
			names = append(names, f.dashed())
		}
		names = append(names, "--help")
		fmt.Fprintf(w, "\t%q) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c, strings.Join(names, " "))
	}
	fmt.Fprint(w, "\tesac\n}\ncomplete -o default -F _tagbridge tagbridge\n")
}

// zshDesc makes a flag's usage fit inside an _arguments [description].
func zshDesc(s string) string {
	s, _, _ = strings.Cut(s, " (default")
	return strings.NewReplacer("[", "(", "]", ")", "'", `'\''`, `\`, "").Replace(s)
}

func (p Program) writeZshCompletion(w io.Writer, helps map[string]help) {
	fmt.Fprint(w, "#compdef tagbridge\n# zsh completion for tagbridge, from \"tagbridge completion zsh\"\n\n_tagbridge() {\n\tlocal -a cmds\n\tcmds=(\n")
	for _, c := range p.topCommands() {
		desc := p.usageSummary(c)
		fmt.Fprintf(w, "\t\t'%s:%s'\n", c, zshDesc(desc))
	}
	fmt.Fprint(w, "\t)\n\tif (( CURRENT == 2 )); then\n\t\t_describe command cmds\n\t\treturn\n\tfi\n\tlocal cmd=$words[2]\n")
	fmt.Fprint(w, "\tif [[ $cmd == certs ]]; then\n\t\tif (( CURRENT == 3 )); then\n\t\t\t_values subcommand create renew\n\t\t\treturn\n\t\tfi\n\t\tcmd=\"certs $words[3]\"\n\tfi\n\tcase $cmd in\n")
	fmt.Fprint(w, "\tcompletion) _values shell bash zsh ;;\n")
	for _, c := range p.Commands {
		if c == "completion" {
			continue
		}
		fmt.Fprintf(w, "\t%q)\n\t\t_arguments \\\n", c)
		for _, f := range helps[c].flags {
			spec := fmt.Sprintf("%s[%s]", f.dashed(), zshDesc(f.usage))
			switch {
			case f.arg == "directory":
				spec += ":" + f.arg + ":_files -/"
			case fileArgs[f.arg]:
				spec += ":" + f.arg + ":_files"
			case f.arg != "":
				spec += ":" + f.arg + ": "
			}
			fmt.Fprintf(w, "\t\t\t'%s' \\\n", spec)
		}
		fmt.Fprint(w, "\t\t\t'--help[print the usage]'\n\t\t;;\n")
	}
	fmt.Fprint(w, "\tesac\n}\n\n_tagbridge \"$@\"\n")
}
