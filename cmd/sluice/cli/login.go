package cli

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sluice-ci/sluice/runners/local"
)

func newLogin(e *env, stdin io.Reader) *cobra.Command {
	var token string
	cmd := &cobra.Command{
		Use:   "login URL",
		Short: "Keep an API token for a Sluice server",
		Long: `Login checks an API token against a Sluice server (GET /api/v1/whoami) and
keeps it in $SLUICE_HOME/credentials.json (readable by you only), under the
server's URL. Then --server URL (or SLUICE_SERVER=URL) on runs, status,
logs, approve, reject, cancel, retry and run works through that server's
API; SLUICE_TOKEN, when set, is used instead of the kept token.

The token comes from --token, or from standard input: the server's
administrator makes it with sluice server token create --user NAME.`,
		Example: `  sluice login https://ci.example.com --token sluice_...
  pass show sluice | sluice login https://ci.example.com
  sluice runs --server https://ci.example.com`,
		Args: exactArgs(1, "the server's URL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			u := normalizeURL(args[0])
			if token == "" {
				if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					fmt.Fprintf(e.stderr, "API token for %s: ", u)
				}
				line, err := bufio.NewReader(stdin).ReadString('\n')
				if err != nil && line == "" {
					return usageError{fmt.Errorf("no token: give it with --token or on standard input")}
				}
				token = line
			}
			token = strings.TrimSpace(token)
			if token == "" {
				return usageError{fmt.Errorf("the token is empty")}
			}
			api := &apiClient{url: u, token: token, http: &http.Client{Timeout: 30 * time.Second}}
			var who struct {
				User string `json:"user"`
			}
			if err := api.do(cmd.Context(), http.MethodGet, "/whoami", nil, &who); err != nil {
				return err
			}
			home, err := local.Home()
			if err != nil {
				return err
			}
			creds, err := readCredentials(home)
			if err != nil {
				return err
			}
			creds.Servers[u] = credential{Token: token, User: who.User}
			if err := writeCredentials(home, creds); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Logged in to %s as %s; the token is kept in %s.\n", u, who.User, credentialsFile(home))
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "the API token (default: read from standard input)")
	return cmd
}
