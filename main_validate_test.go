package main

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestValidateAsServiceUser walks the README's pre-start check: secrets in
// a root-only env file, validate as root checking as the service user
// ("nobody" here), a spool directory owned by root, a trust store that
// does not exist yet; validate names the user and the permission, and
// writes nothing.
func TestValidateAsServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: checks as another user, so it runs only as root (as in CI)")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	bin := buildBinary(t)

	dir, err := os.MkdirTemp("", "tagbridge-validate-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certDir, spool, pki := filepath.Join(dir, "certs"), filepath.Join(dir, "spool"), filepath.Join(dir, "pki")
	for _, d := range []string{certDir, spool} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(certDir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "certs", "create", "--dir", certDir, "--agent-id", "line1", "--hostname", "ipc1").CombinedOutput(); err != nil {
		t.Fatalf("certs create: %v\n%s", err, out)
	}
	env := filepath.Join(dir, "tagbridge.env")
	writeFileMode(t, env, "# secrets\nTB_TEST_MQTT_PASSWORD=\"s3cret-never-shown\"\n", 0o600)
	cfg := filepath.Join(dir, "config.yaml")
	writeFileMode(t, cfg, `agent: {id: line1, allowed_cert_dirs: [`+certDir+`], spool_dir: `+spool+`, pki_dir: `+pki+`}
mqtt: {username: tb, password_env: TB_TEST_MQTT_PASSWORD, payload: sparkplug_b, sparkplug: {group_id: plant}}
plcs:
  - name: press1
    endpoint: opc.tcp://127.0.0.1:4840
    security: {policy: Basic256Sha256, certificate_file: `+certDir+`/client-cert.pem, key_file: `+certDir+`/client-key.pem}
    tags: [{node: ns=2;s=Temp}]
`, 0o644)

	validate := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"validate", "-c", cfg}, args...)...)
		cmd.Env = append(os.Environ(), "TB_TEST_MQTT_PASSWORD=") // only the env file may provide it
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "s3cret") {
			t.Errorf("validate printed the secret:\n%s", out)
		}
		return string(out), code
	}

	// Without the env file: the variable is empty, and validate says where
	// the service's secrets are.
	out, code := validate("--user", "nobody")
	if code != exitConfig || !strings.Contains(out, `environment variable "TB_TEST_MQTT_PASSWORD" is empty`) || !strings.Contains(out, "--env-file /etc/default/tagbridge --user tagbridge") {
		t.Errorf("validate without --env-file: exit %d\n%s\nwant %d, the variable and the hint", code, out, exitConfig)
	}

	// With it, as nobody: the root-owned spool and the trust store nobody
	// cannot create are named, with the user.
	out, code = validate("--env-file", env, "--user", "nobody")
	who := "user nobody (uid " + u.Uid + ")"
	for _, want := range []string{
		cfg + ": agent.spool_dir: " + spool + " is not writable by " + who + ": run keeps the values not yet delivered there (chown nobody " + spool + ")",
		cfg + ": agent.pki_dir: " + pki + " does not exist, and " + who + " cannot create it: " + dir + " is not writable for it",
		"the configuration is valid, but run as " + who + " would fail",
	} {
		if code != exitRuntime || !strings.Contains(out, want) {
			t.Errorf("validate as nobody: exit %d\n%s\nwant 1 and %q", code, out, want)
		}
	}
	if _, err := os.Stat(pki); !os.IsNotExist(err) {
		t.Errorf("validate created %s (%v)", pki, err)
	}

	// Repaired: OK, and still nothing written (no bdSeq file, no store).
	if err := os.Chown(spool, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if out, code = validate("--env-file", env, "--user", "nobody"); code != exitOK || !strings.HasPrefix(out, "config OK: 1 PLC, 1 tag") {
		t.Errorf("validate after the repair: exit %d\n%s", code, out)
	}
	if entries, _ := os.ReadDir(spool); len(entries) > 0 {
		t.Errorf("validate wrote into the spool directory: %v", entries)
	}
	if _, err := os.Stat(pki); !os.IsNotExist(err) {
		t.Errorf("validate created %s (%v)", pki, err)
	}
}

func writeFileMode(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}
