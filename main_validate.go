package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tagbridge/tagbridge/config"
)

const validateUsage = `validate [-c FILE] [--env-file FILE] [--user NAME]

Loads the configuration exactly as run does and starts nothing: it writes
nothing either. It also checks that the spool directory and the trust stores
can be written by the user it runs as, as run needs. Secrets for the *_env
keys come from the environment, or from --env-file (VAR=value lines, as the
unit's EnvironmentFile /etc/default/tagbridge). As root, --user checks as
that user after reading the env file: the service's view, with the secrets
only root can read. Exit status: 0 ok, 78 bad configuration, 1 the spool or
a trust store is not writable.`

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", validateUsage, stderr)
	file := fs.String("c", defaultConfig, "configuration `file`")
	envFile := fs.String("env-file", "", "read VAR=value lines from this `file` into the environment first")
	asUser := fs.String("user", "", "as root: check as this `user` (the service's, e.g. tagbridge), after reading --env-file")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if *envFile != "" {
		if err := loadEnvFile(*envFile); err != nil {
			fmt.Fprintf(stderr, "tagbridge validate: %v\n", err)
			return exitConfig
		}
	}
	if *asUser != "" {
		if err := becomeUser(*asUser); err != nil {
			fmt.Fprintf(stderr, "tagbridge validate: --user %s: %v\n", *asUser, err)
			return exitConfig
		}
	}
	cfg, err := loadConfig(*file)
	if err != nil {
		printConfigError(stderr, err)
		if *envFile == "" && strings.Contains(err.Error(), "environment variable") {
			fmt.Fprintln(stderr, "tagbridge validate: the service reads its secrets from /etc/default/tagbridge; as root: tagbridge validate --env-file /etc/default/tagbridge --user tagbridge")
		}
		return exitConfig
	}
	if problems := checkRunDirs(cfg); len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(stderr, p)
		}
		fmt.Fprintf(stderr, "tagbridge validate: the configuration is valid, but run as user %s would fail\n", userName())
		return exitRuntime
	}
	fmt.Fprintf(stdout, "config OK: %s, %s\n", plural(len(cfg.PLCs), "PLC"), plural(cfg.TagCount(), "tag"))
	return exitOK
}

// loadEnvFile sets the variables of a systemd EnvironmentFile: VAR=value
// lines, blank lines and # or ; comments, values optionally in quotes. A
// value never appears in an error.
func loadEnvFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("env file: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return fmt.Errorf("%s:%d: want VAR=value", name, n)
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
			if val != "" && line[len(line)-1] == '"' {
				val = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(val)
			}
		}
		if err := os.Setenv(key, val); err != nil {
			return fmt.Errorf("%s:%d: set %s: %w", name, n, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("env file %s: %w", name, err)
	}
	return nil
}

// becomeUser drops root for name's user, primary group and supplementary
// groups, for the whole process (Go applies the ids to every thread).
func becomeUser(name string) error {
	if os.Geteuid() != 0 {
		return errors.New("only root can check as another user; run as that user instead (runuser -u USER -- tagbridge validate)")
	}
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	var groups []int
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				groups = append(groups, n)
			}
		}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid: %w", err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid: %w", err)
	}
	return nil
}

// userName names the user this process runs as, with its id.
func userName() string {
	uid := os.Geteuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

func currentName() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}

// checkRunDirs reports, one line each, what of the spool directory and the
// trust stores run could not create, read or write as this user. It only
// looks: nothing is created.
func checkRunDirs(cfg *config.Config) []string {
	var out []string
	out = append(out, checkDir(cfg.File, "agent.spool_dir", cfg.Agent.SpoolDir, "keeps the values not yet delivered", true)...)
	seen := map[string]bool{}
	for i, p := range cfg.PLCs {
		if strings.EqualFold(p.Security.Policy, "None") {
			continue
		}
		dir, key := p.Security.PKIDir, fmt.Sprintf("plcs[%d].security.pki_dir", i)
		if dir == "" || dir == cfg.Agent.PKIDir {
			dir, key = cfg.Agent.PKIDir, "agent.pki_dir"
		}
		if dir == "" || seen[dir] {
			continue
		}
		seen[dir] = true
		out = append(out, checkDir(cfg.File, key, dir, "reads trusted certificates and saves refused ones", false)...)
	}
	return out
}

// maxChecked bounds the entries looked at in one directory tree (a full
// spool holds many segments; the first problems are what matters).
const maxChecked = 10000

func checkDir(file, key, dir, why string, filesWritable bool) []string {
	if dir == "" {
		return nil
	}
	prefix := fmt.Sprintf("%s: %s: ", file, key)
	who, name := userName(), currentName()
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		parent := dir
		for {
			parent = filepath.Dir(parent)
			if _, err := os.Stat(parent); err == nil || parent == filepath.Dir(parent) {
				break
			}
		}
		if syscall.Access(parent, 0o3) != nil { // W_OK|X_OK
			return []string{fmt.Sprintf("%s%s does not exist, and user %s cannot create it: %s is not writable for it (run %s there; create %s owned by that user)", prefix, dir, who, parent, why, dir)}
		}
		return nil
	}
	if err != nil {
		return []string{prefix + err.Error()}
	}
	if !fi.IsDir() {
		return []string{fmt.Sprintf("%s%s is not a directory", prefix, dir)}
	}
	var out []string
	checked := 0
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		checked++
		if len(out) >= 5 || checked > maxChecked {
			return filepath.SkipAll
		}
		if err != nil {
			out = append(out, fmt.Sprintf("%s%s cannot be read by user %s: %v (run %s there)", prefix, path, who, errors.Unwrap(err), why))
			return nil
		}
		switch {
		case d.IsDir():
			if syscall.Access(path, 0o7) != nil { // R_OK|W_OK|X_OK
				out = append(out, fmt.Sprintf("%s%s is not writable by user %s: run %s there (chown %s %s)", prefix, path, who, why, name, path))
				return filepath.SkipDir
			}
		case d.Type().IsRegular():
			mode, need := uint32(0o4), "readable"
			if filesWritable {
				mode, need = 0o6, "readable and writable"
			}
			if syscall.Access(path, mode) != nil {
				out = append(out, fmt.Sprintf("%s%s is not %s by user %s: run %s there (chown %s %s)", prefix, path, need, who, why, name, path))
			}
		}
		return nil
	})
	return out
}
