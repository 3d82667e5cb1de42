package server

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "server.hcl")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigFile(t *testing.T) {
	p := writeConfig(t, `
listen     = "0.0.0.0:9090"
public_url = "https://ci.example.com"
idle_timeout = "5m"
github {
  app_id           = 42
  private_key_file = "/etc/app.pem"
  webhook_secrets  = ["new", "old"]
  commit_statuses  = true
}
repository "web" { url = "/srv/git/web.git" }
team "sre" { members = ["alice", "bob"] }
`)
	// A flag (already in the config) wins over the file.
	c := Config{Listen: "127.0.0.1:1"}
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:1" || c.PublicURL != "https://ci.example.com" || c.IdleTimeout != 5*time.Minute {
		t.Errorf("listen %q, public URL %q, idle %s", c.Listen, c.PublicURL, c.IdleTimeout)
	}
	if c.GitHub.AppID != 42 || !slices.Equal(c.GitHub.WebhookSecrets, []string{"new", "old"}) || c.GitHub.PrivateKeyFile != "/etc/app.pem" || !c.GitHub.CommitStatuses {
		t.Errorf("github %+v", c.GitHub)
	}
	if len(c.Repositories) != 1 || c.Repositories[0] != (Repository{Name: "web", URL: "/srv/git/web.git"}) || !slices.Equal(c.Teams["sre"], []string{"alice", "bob"}) {
		t.Errorf("repositories %+v, teams %+v", c.Repositories, c.Teams)
	}
}

func TestConfigFileMistakes(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown setting", "listen = \"x\"\nlisten_address = \"y\"\n", "server.hcl:2,1-15: Unsupported argument; An argument named \"listen_address\" is not expected here"},
		{"bad duration", "idle_timeout = \"soon\"\n", `idle_timeout "soon" is not a duration`},
		{"syntax", "github {\n", "server.hcl:1"},
		{"wrong type", "github { app_id = \"x\" }\n", "server.hcl:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := c.LoadFile(writeConfig(t, tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigEnv(t *testing.T) {
	var c Config
	if err := c.FromEnv(env(map[string]string{"SLUICE_GITHUB_WEBHOOK_SECRET": "a, b", "SLUICE_GITHUB_APP_ID": "7", "SLUICE_GIT_HOOK_SECRET": "h"})); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.GitHub.WebhookSecrets, []string{"a", "b"}) || c.GitHub.AppID != 7 || !slices.Equal(c.GitHookSecrets, []string{"h"}) {
		t.Errorf("%+v", c)
	}
	// Set but empty: a mistake, not "no webhooks".
	var empty Config
	if err := empty.FromEnv(env(map[string]string{"SLUICE_GITHUB_WEBHOOK_SECRET": ""})); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty SLUICE_GITHUB_WEBHOOK_SECRET gave %v", err)
	}
	var bad Config
	if err := bad.FromEnv(env(map[string]string{"SLUICE_GITHUB_APP_ID": "abc"})); err == nil || !strings.Contains(err.Error(), "App ID") {
		t.Errorf("a bad app id gave %v", err)
	}
	// An empty secret in the file is refused when the server starts.
	if _, err := Start(t.Context(), Config{Home: t.TempDir(), GitHub: GitHubConfig{WebhookSecrets: []string{""}}}, nil); err == nil || !strings.Contains(err.Error(), "SLUICE_GITHUB_WEBHOOK_SECRET") {
		t.Errorf("an empty webhook secret started the server: %v", err)
	}
}

// The App's OAuth client, for signing in to the web view with GitHub:
// from server.hcl, or the environment, which wins.
func TestConfigGitHubSignIn(t *testing.T) {
	p := writeConfig(t, `
github {
  client_id     = "Iv1.file"
  client_secret = "from-file"
  web_url       = "https://ghe.example.com"
}
`)
	var c Config
	if err := c.FromEnv(env(map[string]string{"SLUICE_GITHUB_CLIENT_SECRET": "from-env"})); err != nil {
		t.Fatal(err)
	}
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if c.GitHub.ClientID != "Iv1.file" || c.GitHub.ClientSecret != "from-env" || c.GitHub.WebURL != "https://ghe.example.com" {
		t.Errorf("github %+v", c.GitHub)
	}
}
