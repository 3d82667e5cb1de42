package server

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/sluice-ci/sluice/engine/embedded/pgurl"
	"github.com/sluice-ci/sluice/runners/local"
)

// DefaultListen is where the server listens unless told otherwise: this
// machine only, as a laptop's local server should.
const DefaultListen = "127.0.0.1:8080"

// DefaultIdleTimeout is how long a server started in the background by a
// command (sluice run, sluice runs) stays up with nothing to do.
const DefaultIdleTimeout = 15 * time.Minute

// Config is the server's configuration: flags, then the environment, then
// server.hcl, then defaults.
type Config struct {
	// Listen is the HTTP address.
	Listen string
	// PublicURL is how GitHub and browsers reach the server; links in
	// answers and in the hook's output use it.
	PublicURL string
	// Home holds the server's state: the embedded Temporal database, logs,
	// workspaces, mirrors, tokens.
	Home string
	// Temporal is TemporalEmbedded or TemporalExternal; empty: external
	// when TemporalAddress is set.
	Temporal string
	// TemporalAddress is an existing cluster; empty runs the embedded one.
	TemporalAddress string
	// DB is the embedded Temporal's PostgreSQL database, a URL
	// postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=...] (see
	// engine/embedded/pgurl); empty: SQLite in Home.
	DB string
	// Migrate creates or updates DB's schema before the server starts;
	// without it an empty or older schema is refused.
	Migrate bool
	// HistoryShards is the shard count of a new DB (0: 4); a database
	// keeps the count it was made with.
	HistoryShards int
	// TemporalListen is where the embedded Temporal listens (IP:PORT), so
	// that runners on other hosts reach it; empty: loopback only.
	TemporalListen string
	// TemporalTLS and TemporalAPIKey connect to TemporalAddress.
	TemporalTLS    *local.TLSOptions
	TemporalAPIKey string
	Namespace      string
	// NoRunner starts no in-process runner: runs wait for `sluice runner`s.
	NoRunner bool
	// Labels are the in-process runner's labels.
	Labels []string
	// Build brings up BuildKit and a registry for the in-process runner
	// when they can be (image and container steps).
	Build bool
	// IdleTimeout stops a server with no runs and no requests for that
	// long; 0 never does (a team's server).
	IdleTimeout time.Duration
	// Background is a server a command started: it says so in its log and
	// records itself for the commands that find it.
	Background bool
	// MetricsListen serves /metrics on a listener of its own (HOST:PORT)
	// instead of Listen's.
	MetricsListen string
	// MetricsInterval is how often the figures of /metrics that come
	// from Temporal are read (default DefaultMetricsInterval).
	MetricsInterval time.Duration
	// Inbox is InboxOn, InboxOff, or empty: on with the embedded Temporal,
	// off with a cluster. On, a webhook or git hook delivery is answered
	// once it is synced to $SLUICE_HOME/server/inbox, and forwarded to
	// Temporal after (see package inbox); off, once Temporal has started
	// its workflow.
	Inbox string

	GitHub GitHubConfig
	// GitHookSecrets sign git hook requests; the first is the one `sluice
	// hook install` writes. Empty: one is made and kept in the home.
	GitHookSecrets []string
	// Repositories are the git repositories whose hooks the server
	// accepts, by name; empty accepts any hook signed with a hook secret.
	Repositories []Repository
	// Teams are the members of teams that approvers name (team:sre), for
	// repositories that are not on GitHub.
	Teams map[string][]string
}

// GitHubConfig is the GitHub App the server acts as.
type GitHubConfig struct {
	AppID          int64
	PrivateKeyFile string
	WebhookSecrets []string
	// APIURL is GitHub's REST API; default https://api.github.com/.
	APIURL string
	// CommitStatuses also posts a commit status per pipeline
	// (sluice/<pipeline>), for branch protection that requires statuses
	// rather than checks.
	CommitStatuses bool
	// ClientID and ClientSecret are the App's OAuth credentials (its
	// settings page, "Client ID" and "Client secrets"): with both, people
	// sign in to the web view with GitHub.
	ClientID     string
	ClientSecret string
	// WebURL is GitHub's web root, where sign-in and commit links go;
	// empty: derived from APIURL (https://github.com for api.github.com,
	// https://HOST for https://HOST/api/v3/).
	WebURL string
}

// Repository is a git repository whose post-receive hook reports to the
// server.
type Repository struct {
	Name string
	// URL is where runners clone it from.
	URL string
}

// repositoryURL is the clone URL of the repository block called name.
func (c Config) repositoryURL(name string) (string, bool) {
	for _, r := range c.Repositories {
		if r.Name == name {
			return r.URL, true
		}
	}
	return "", false
}

// fileConfig is server.hcl.
type fileConfig struct {
	Listen          string      `hcl:"listen,optional"`
	Temporal        string      `hcl:"temporal,optional"`
	DB              string      `hcl:"db,optional"`
	HistoryShards   int         `hcl:"history_shards,optional"`
	PublicURL       string      `hcl:"public_url,optional"`
	TemporalAddress string      `hcl:"temporal_address,optional"`
	TemporalListen  string      `hcl:"temporal_listen,optional"`
	Namespace       string      `hcl:"namespace,optional"`
	Labels          []string    `hcl:"labels,optional"`
	IdleTimeout     string      `hcl:"idle_timeout,optional"`
	MetricsListen   string      `hcl:"metrics_listen,optional"`
	Inbox           string      `hcl:"inbox,optional"`
	GitHookSecrets  []string    `hcl:"git_hook_secrets,optional"`
	GitHub          *fileGitHub `hcl:"github,block"`
	Repositories    []fileRepo  `hcl:"repository,block"`
	Teams           []fileTeam  `hcl:"team,block"`
}

type fileGitHub struct {
	AppID          int64    `hcl:"app_id,optional"`
	PrivateKeyFile string   `hcl:"private_key_file,optional"`
	WebhookSecrets []string `hcl:"webhook_secrets,optional"`
	APIURL         string   `hcl:"api_url,optional"`
	CommitStatuses *bool    `hcl:"commit_statuses,optional"`
	ClientID       string   `hcl:"client_id,optional"`
	ClientSecret   string   `hcl:"client_secret,optional"`
	WebURL         string   `hcl:"web_url,optional"`
}

type fileRepo struct {
	Name string `hcl:"name,label"`
	URL  string `hcl:"url"`
}

type fileTeam struct {
	Name    string   `hcl:"name,label"`
	Members []string `hcl:"members"`
}

// LoadFile reads server.hcl into c, under what c already holds (flags and
// the environment win). Mistakes are reported with file:line:column.
func (c *Config) LoadFile(path string) error {
	p := hclparse.NewParser()
	f, diags := p.ParseHCLFile(path)
	if diags.HasErrors() {
		return diagError(diags)
	}
	var fc fileConfig
	if diags := gohcl.DecodeBody(f.Body, nil, &fc); diags.HasErrors() {
		return diagError(diags)
	}
	setDefault(&c.Listen, fc.Listen)
	setDefault(&c.PublicURL, fc.PublicURL)
	setDefault(&c.TemporalAddress, fc.TemporalAddress)
	setDefault(&c.Temporal, fc.Temporal)
	setDefault(&c.DB, fc.DB)
	if c.HistoryShards == 0 {
		c.HistoryShards = fc.HistoryShards
	}
	setDefault(&c.TemporalListen, fc.TemporalListen)
	setDefault(&c.Namespace, fc.Namespace)
	setDefault(&c.MetricsListen, fc.MetricsListen)
	setDefault(&c.Inbox, fc.Inbox)
	if len(c.Labels) == 0 {
		c.Labels = fc.Labels
	}
	if c.IdleTimeout == 0 && fc.IdleTimeout != "" {
		d, err := time.ParseDuration(fc.IdleTimeout)
		if err != nil {
			return fmt.Errorf("%s: idle_timeout %q is not a duration like \"15m\"", path, fc.IdleTimeout)
		}
		c.IdleTimeout = d
	}
	if len(c.GitHookSecrets) == 0 {
		c.GitHookSecrets = fc.GitHookSecrets
	}
	if g := fc.GitHub; g != nil {
		if c.GitHub.AppID == 0 {
			c.GitHub.AppID = g.AppID
		}
		setDefault(&c.GitHub.PrivateKeyFile, g.PrivateKeyFile)
		setDefault(&c.GitHub.APIURL, g.APIURL)
		setDefault(&c.GitHub.ClientID, g.ClientID)
		setDefault(&c.GitHub.ClientSecret, g.ClientSecret)
		setDefault(&c.GitHub.WebURL, g.WebURL)
		if g.CommitStatuses != nil && !c.GitHub.CommitStatuses {
			c.GitHub.CommitStatuses = *g.CommitStatuses
		}
		if len(c.GitHub.WebhookSecrets) == 0 {
			c.GitHub.WebhookSecrets = g.WebhookSecrets
		}
	}
	for _, r := range fc.Repositories {
		c.Repositories = append(c.Repositories, Repository{Name: r.Name, URL: r.URL})
	}
	for _, t := range fc.Teams {
		if c.Teams == nil {
			c.Teams = map[string][]string{}
		}
		c.Teams[t.Name] = t.Members
	}
	return nil
}

// FromEnv fills what the environment sets and c does not:
// SLUICE_GITHUB_WEBHOOK_SECRET (several separated by commas, for
// rotation), SLUICE_GITHUB_APP_ID, SLUICE_GITHUB_PRIVATE_KEY_FILE,
// SLUICE_GITHUB_API_URL, SLUICE_GITHUB_CLIENT_ID,
// SLUICE_GITHUB_CLIENT_SECRET, SLUICE_GITHUB_WEB_URL,
// SLUICE_GIT_HOOK_SECRET, SLUICE_PUBLIC_URL, SLUICE_TEMPORAL, SLUICE_DB.
func (c *Config) FromEnv(lookupEnv func(string) (string, bool)) error {
	getenv := func(k string) string { v, _ := lookupEnv(k); return v }
	if len(c.GitHub.WebhookSecrets) == 0 {
		if v, ok := lookupEnv("SLUICE_GITHUB_WEBHOOK_SECRET"); ok {
			c.GitHub.WebhookSecrets = splitList(v)
			if len(c.GitHub.WebhookSecrets) == 0 {
				return fmt.Errorf("SLUICE_GITHUB_WEBHOOK_SECRET is set but empty; set it to the App's webhook secret, or unset it to serve no GitHub webhooks")
			}
		}
	}
	if c.GitHub.AppID == 0 {
		if v := getenv("SLUICE_GITHUB_APP_ID"); v != "" {
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("SLUICE_GITHUB_APP_ID %q is not a number; it is the App ID on the App's settings page", v)
			}
			c.GitHub.AppID = id
		}
	}
	setDefault(&c.GitHub.PrivateKeyFile, getenv("SLUICE_GITHUB_PRIVATE_KEY_FILE"))
	setDefault(&c.GitHub.APIURL, getenv("SLUICE_GITHUB_API_URL"))
	setDefault(&c.GitHub.ClientID, getenv("SLUICE_GITHUB_CLIENT_ID"))
	setDefault(&c.GitHub.ClientSecret, getenv("SLUICE_GITHUB_CLIENT_SECRET"))
	setDefault(&c.GitHub.WebURL, getenv("SLUICE_GITHUB_WEB_URL"))
	setDefault(&c.PublicURL, getenv("SLUICE_PUBLIC_URL"))
	setDefault(&c.Temporal, getenv("SLUICE_TEMPORAL"))
	setDefault(&c.DB, getenv("SLUICE_DB"))
	setDefault(&c.Inbox, getenv("SLUICE_INBOX"))
	if len(c.GitHookSecrets) == 0 {
		c.GitHookSecrets = splitList(getenv("SLUICE_GIT_HOOK_SECRET"))
	}
	return nil
}

// How the server reaches Temporal (Config.Temporal).
const (
	// TemporalEmbedded runs Temporal in a child process (sluice-temporal)
	// on SQLite in the home, or on PostgreSQL (Config.DB).
	TemporalEmbedded = "embedded"
	// TemporalExternal uses the cluster at Config.TemporalAddress.
	TemporalExternal = "external"
)

// Config.Inbox: whether deliveries are answered from a journal in the
// home (InboxOn) or once Temporal has them (InboxOff).
const (
	InboxOn  = "on"
	InboxOff = "off"
)

// inboxTemporalNice is the nice value of the embedded Temporal under a
// server that answers deliveries from its inbox.
const inboxTemporalNice = 10

// temporalNice is the nice value the server starts the embedded Temporal
// at. With the inbox, a delivery's answer waits for a write to disk, not
// for Temporal; Temporal, busy starting the runs of a burst of pushes,
// then gives way to the handler (at 200 deliveries a second on 2 cores
// the 202's p99 fell from 20 to 12 ms, and the runs started no later:
// docs/benchmarks.md). The server a command starts in the background
// keeps Temporal at its own priority: the command waits on Temporal.
func temporalNice(cfg Config) int {
	if cfg.Inbox == InboxOn && cfg.TemporalAddress == "" && !cfg.Background {
		return inboxTemporalNice
	}
	return 0
}

// checkInbox settles Inbox, once Temporal is settled.
func (c *Config) checkInbox() error {
	switch c.Inbox {
	case "":
		// The embedded Temporal keeps its state in the home as the inbox
		// does: the inbox adds no way to lose a delivery. A server on a
		// cluster may have no disk of its own that outlives it (a pod).
		c.Inbox = InboxOff
		if c.Temporal == TemporalEmbedded {
			c.Inbox = InboxOn
		}
	case InboxOn, InboxOff:
	default:
		return fmt.Errorf("--inbox %q: give on (answer deliveries once they are on disk in $SLUICE_HOME/server/inbox) or off (once Temporal has them)", c.Inbox)
	}
	return nil
}

// checkTemporal settles Temporal and checks that the Temporal settings
// fit together.
func (c *Config) checkTemporal() error {
	switch c.Temporal {
	case "":
		c.Temporal = TemporalEmbedded
		if c.TemporalAddress != "" {
			c.Temporal = TemporalExternal
		}
	case TemporalEmbedded:
		if c.TemporalAddress != "" {
			return fmt.Errorf("--temporal=embedded runs Temporal here, and --temporal-address (or SLUICE_TEMPORAL_ADDRESS) %q names a cluster; give one of them", c.TemporalAddress)
		}
	case TemporalExternal:
		if c.TemporalAddress == "" {
			return fmt.Errorf("--temporal=external needs the cluster's --temporal-address HOST:PORT")
		}
	default:
		return fmt.Errorf("--temporal %q: give embedded (the default) or external", c.Temporal)
	}
	if c.Temporal == TemporalExternal {
		if c.DB != "" || c.Migrate || c.HistoryShards != 0 {
			return fmt.Errorf("--db, --migrate and --history-shards are the embedded Temporal's; the cluster at %s keeps its own database (drop them, or SLUICE_DB)", c.TemporalAddress)
		}
		return nil
	}
	if c.DB == "" {
		if c.Migrate {
			return fmt.Errorf("--migrate needs --db postgres://...: the SQLite database in $SLUICE_HOME is made and updated by itself")
		}
		if c.HistoryShards > 1 {
			return fmt.Errorf("--history-shards needs --db postgres://...: SQLite has one history shard")
		}
		return nil
	}
	if c.HistoryShards < 0 {
		return fmt.Errorf("--history-shards %d: give a positive number", c.HistoryShards)
	}
	_, err := pgurl.Parse(c.DB)
	return err
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func setDefault(dst *string, v string) {
	if *dst == "" {
		*dst = v
	}
}

func diagError(diags hcl.Diagnostics) error {
	var b strings.Builder
	for i, d := range diags {
		if i > 0 {
			b.WriteString("\n")
		}
		if d.Subject != nil {
			fmt.Fprintf(&b, "%s: ", d.Subject)
		}
		b.WriteString(d.Summary)
		if d.Detail != "" {
			b.WriteString("; " + d.Detail)
		}
	}
	return fmt.Errorf("%s", b.String())
}
