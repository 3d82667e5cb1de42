package cli

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sluice-ci/sluice/server"
)

// TestServerSettingsPrecedence: as sluice server --help says, a flag wins
// over the environment, and the environment over server.hcl; what only
// the file sets is taken from it.
func TestServerSettingsPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "server.hcl")
	if err := os.WriteFile(file, []byte(`
listen     = "127.0.0.1:9000"
public_url = "https://file.example.com"
inbox      = "off"
namespace  = "from-file"
github {
  webhook_secrets = ["file-secret"]
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	environ := []string{
		"SLUICE_PUBLIC_URL=https://env.example.com",
		"SLUICE_INBOX=on",
		"SLUICE_GITHUB_WEBHOOK_SECRET=env-secret",
	}
	cfg := server.Config{Listen: "127.0.0.1:8081"} // --listen
	if err := settle(&cfg, file, environ); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"listen (flag over file)", cfg.Listen, "127.0.0.1:8081"},
		{"public URL (environment over file)", cfg.PublicURL, "https://env.example.com"},
		{"inbox (environment over file)", cfg.Inbox, "on"},
		{"namespace (file alone)", cfg.Namespace, "from-file"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if !slices.Equal(cfg.GitHub.WebhookSecrets, []string{"env-secret"}) {
		t.Errorf("webhook secrets (environment over file) = %q, want [env-secret]", cfg.GitHub.WebhookSecrets)
	}
}
