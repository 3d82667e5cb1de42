package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluice-ci/sluice/runners/local"
	"github.com/sluice-ci/sluice/server"
	"github.com/sluice-ci/sluice/server/webhook"
)

// hookMarker is in every post-receive hook sluice installs, so that it
// replaces its own hook and never someone else's.
const hookMarker = "# installed by sluice hook install"

func newHook(e *env) *cobra.Command {
	hook := &cobra.Command{
		Use:   "hook",
		Short: "Connect a git repository to a Sluice server",
		Long: `Hook connects bare git repositories on any git server (a plain ssh host,
Gitolite, Gitea, cgit...) to a Sluice server: every branch or tag a push
updates becomes an event, and its pipelines run.`,
		Args: noArgs,
	}
	hook.AddCommand(newHookInstall(e), newHookPostReceive(e))
	return hook
}

func newHookInstall(e *env) *cobra.Command {
	var serverURL, secret, name, url string
	var force bool
	cmd := &cobra.Command{
		Use:   "install REPO.git",
		Short: "Install a post-receive hook that reports pushes to a Sluice server",
		Long: `Install writes a post-receive hook into a bare repository. After each push
the hook sends every updated branch and tag, signed with the server's git
hook secret, to the server, which answers once the push is queued
durably; the pusher sees the answer as "remote: sluice: ...". Runners clone
the repository from --url (default: the repository's path, for runners on
this machine or a shared file system) at the pushed commit.

The secret is the server's (SLUICE_GIT_HOOK_SECRET or git_hook_secrets in
server.hcl); on the server's own machine it defaults to the one the server
keeps in $SLUICE_HOME. Settings are kept in the repository's git config
(sluice.*), so they can be changed with git config.`,
		Example: `  sluice hook install /srv/git/web.git --server http://127.0.0.1:8080
  sluice hook install /srv/git/web.git --server https://ci.internal --secret "$HOOK_SECRET" --url ssh://git.internal/srv/git/web.git`,
		Args: exactArgs(1, "the path of a bare repository"),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			out, err := exec.Command("git", "-C", repo, "rev-parse", "--is-bare-repository").Output()
			if err != nil || strings.TrimSpace(string(out)) != "true" {
				return fmt.Errorf("%s is not a bare git repository (git init --bare makes one); hooks run in the repository people push to", repo)
			}
			home, err := local.Home()
			if err != nil {
				return err
			}
			if serverURL == "" {
				r, err := runningServer(home)
				if err != nil {
					return usageError{errors.New("give the server's URL with --server (no server runs for this SLUICE_HOME)")}
				}
				serverURL = r.URL
			}
			if secret == "" {
				if secret, err = server.LocalHookSecret(home); err != nil {
					return err
				}
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(repo), ".git")
			}
			if url == "" {
				url = repo
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			hookFile := filepath.Join(repo, "hooks", "post-receive")
			if b, err := os.ReadFile(hookFile); err == nil && !bytes.Contains(b, []byte(hookMarker)) && !force {
				return fmt.Errorf("%s has a post-receive hook that sluice did not install; add `%s hook post-receive` to it by hand, or replace it with --force", repo, self)
			}
			for k, v := range map[string]string{"sluice.server": serverURL, "sluice.secret": secret, "sluice.name": name, "sluice.url": url} {
				if out, err := exec.Command("git", "-C", repo, "config", k, v).CombinedOutput(); err != nil {
					return fmt.Errorf("git config %s: %s", k, strings.TrimSpace(string(out)))
				}
			}
			// The repository's config holds the secret: only its owner reads it.
			_ = os.Chmod(filepath.Join(repo, "config"), 0o600)
			script := fmt.Sprintf("#!/bin/sh\n%s\n# settings: git config --get-regexp '^sluice\\.'\nexec %s hook post-receive\n", hookMarker, shellQuote(self))
			if err := os.MkdirAll(filepath.Dir(hookFile), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(hookFile, []byte(script), 0o755); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Installed %s: pushes to %s (as %q, cloned from %s) go to %s.\n", hookFile, repo, name, url, serverURL)
			return nil
		},
	}
	cmd.Flags().StringVar(&serverURL, "server", os.Getenv("SLUICE_SERVER"), "the Sluice server's URL (default: the server running for $SLUICE_HOME)")
	cmd.Flags().StringVar(&secret, "secret", os.Getenv("SLUICE_GIT_HOOK_SECRET"), "the server's git hook secret (default: the one in $SLUICE_HOME, on the server's machine)")
	cmd.Flags().StringVar(&name, "name", "", "the repository's name on the server (default: the directory's name without .git)")
	cmd.Flags().StringVar(&url, "url", "", "where runners clone the repository from (default: its path)")
	cmd.Flags().BoolVar(&force, "force", false, "replace a post-receive hook sluice did not install")
	return cmd
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func newHookPostReceive(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "post-receive",
		Short: "What the installed hook runs: report the refs read from stdin to the server",
		Long: `Post-receive is run by git in a bare repository after a push, with one
"OLD NEW REF" line per updated ref on standard input (githooks(5)). It
sends them to the server set in the repository's git config (sluice.*)
and prints the server's answer for the pusher. It never fails the push:
a server it cannot reach within about 30 s is reported to the pusher, and
the push can be reported again by hand, from the bare repository:
  echo "OLD NEW REF" | sluice hook post-receive`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := func(k string) string {
				out, _ := exec.Command("git", "config", "--get", k).Output()
				return strings.TrimSpace(string(out))
			}
			req := server.GitHookRequest{Repository: cfg("sluice.name"), URL: cfg("sluice.url"), Pusher: pusher(e)}
			serverURL, secret := cfg("sluice.server"), cfg("sluice.secret")
			if serverURL == "" || secret == "" || req.Repository == "" {
				fmt.Fprintln(e.stderr, "sluice: this repository's hook is not configured (git config sluice.server, sluice.secret, sluice.name); run sluice hook install")
				return nil
			}
			sc := bufio.NewScanner(cmd.InOrStdin())
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) != 3 {
					continue
				}
				u := server.GitUpdate{Old: f[0], New: f[1], Ref: f[2]}
				if strings.Trim(u.New, "0") != "" {
					out, _ := exec.Command("git", "log", "-1", "--format=%B", u.New).Output()
					u.Message = strings.TrimSpace(string(out))
				}
				req.Updates = append(req.Updates, u)
			}
			if len(req.Updates) == 0 {
				return nil
			}
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			ans, err := postHook(cmd.Context(), strings.TrimSuffix(serverURL, "/")+"/hooks/git", secret, body)
			if err != nil {
				fmt.Fprintf(e.stderr, "sluice: the push was not sent to %s: %v\n", serverURL, err)
				return nil
			}
			for _, u := range ans.Updates {
				switch {
				case u.Ignored != "":
					fmt.Fprintf(e.stderr, "sluice: %s: nothing to run (%s)\n", u.Ref, u.Ignored)
				case u.Duplicate:
					fmt.Fprintf(e.stderr, "sluice: %s: already received (%s)\n", u.Ref, u.Workflow)
				default:
					fmt.Fprintf(e.stderr, "sluice: %s: queued; what it starts: %s\n", u.Ref, u.URL)
				}
			}
			return nil
		},
	}
}

func pusher(e *env) string {
	for _, k := range []string{"GL_USER", "GITEA_PUSHER_NAME", "REMOTE_USER", "USER"} {
		if v, ok := lookupIn(e.environ)(k); ok && v != "" {
			return v
		}
	}
	return ""
}

type hookAnswer struct {
	Updates []struct {
		Ref       string `json:"ref"`
		Workflow  string `json:"workflow"`
		URL       string `json:"url"`
		Duplicate bool   `json:"duplicate"`
		Ignored   string `json:"ignored"`
	} `json:"updates"`
	Error string `json:"error"`
}

// postHook sends a hook request, trying again on a refused connection or
// a 5xx for about 30 s (a server restarting); a request the server
// refuses for what it is (4xx) is not sent again.
func postHook(ctx context.Context, url, secret string, body []byte) (hookAnswer, error) {
	var ans hookAnswer
	var last error
	for attempt, wait := 0, 500*time.Millisecond; attempt < 7; attempt, wait = attempt+1, wait*2 {
		if attempt > 0 {
			time.Sleep(min(wait, 8*time.Second))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return ans, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(server.GitHookSignatureHeader, webhook.Sign(secret, body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		_ = json.Unmarshal(b, &ans)
		switch {
		case resp.StatusCode >= 500:
			last = fmt.Errorf("%s: %s", resp.Status, ans.Error)
			continue
		case resp.StatusCode >= 300:
			return ans, fmt.Errorf("%s: %s", resp.Status, ans.Error)
		}
		return ans, nil
	}
	return ans, last
}
