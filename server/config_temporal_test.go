package server

import (
	"strings"
	"testing"
)

func TestConfigTemporalSettings(t *testing.T) {
	p := writeConfig(t, `
temporal       = "embedded"
db             = "postgres://sluice@db.internal/ci"
history_shards = 8
`)
	var c Config
	if err := c.LoadFile(p); err != nil {
		t.Fatal(err)
	}
	if c.Temporal != TemporalEmbedded || c.DB != "postgres://sluice@db.internal/ci" || c.HistoryShards != 8 {
		t.Errorf("temporal %q, db %q, shards %d", c.Temporal, c.DB, c.HistoryShards)
	}
	// The environment fills what the flags and the file did not.
	c = Config{}
	if err := c.FromEnv(env(map[string]string{"SLUICE_DB": "postgres://u@h/d", "SLUICE_TEMPORAL": "embedded"})); err != nil {
		t.Fatal(err)
	}
	if c.DB != "postgres://u@h/d" || c.Temporal != TemporalEmbedded {
		t.Errorf("from the environment: temporal %q, db %q", c.Temporal, c.DB)
	}
}

func TestCheckTemporal(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		mode string // the settled Temporal, when no error
		err  string
	}{
		{name: "default", cfg: Config{}, mode: TemporalEmbedded},
		{name: "address", cfg: Config{TemporalAddress: "t:7233"}, mode: TemporalExternal},
		{name: "postgres", cfg: Config{DB: "postgres://u:pw@h/d", Migrate: true, HistoryShards: 16}, mode: TemporalEmbedded},
		{name: "embedded with address", cfg: Config{Temporal: "embedded", TemporalAddress: "t:7233"}, err: "--temporal=embedded runs Temporal here"},
		{name: "external without address", cfg: Config{Temporal: "external"}, err: "needs the cluster's --temporal-address"},
		{name: "unknown", cfg: Config{Temporal: "cluster"}, err: `--temporal "cluster": give embedded (the default) or external`},
		{name: "db with a cluster", cfg: Config{TemporalAddress: "t:7233", DB: "postgres://u@h/d"}, err: "the cluster at t:7233 keeps its own database"},
		{name: "migrate without db", cfg: Config{Migrate: true}, err: "--migrate needs --db"},
		{name: "shards without db", cfg: Config{HistoryShards: 4}, err: "SQLite has one history shard"},
		{name: "negative shards", cfg: Config{DB: "postgres://u@h/d", HistoryShards: -1}, err: "--history-shards -1"},
		{name: "bad url", cfg: Config{DB: "postgres://u:pw@h"}, err: `--db "postgres://u:***@h" names no database`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.checkTemporal()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("checkTemporal: %v", err)
			case tc.err == "" && tc.cfg.Temporal != tc.mode:
				t.Errorf("Temporal = %q, want %q", tc.cfg.Temporal, tc.mode)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("checkTemporal = %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

func TestCheckInbox(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
		// nice is the embedded Temporal's nice value: below the
		// server's when the server answers from its inbox.
		nice int
		err  string
	}{
		// The embedded Temporal's state is in the home, as the inbox is.
		{name: "embedded", cfg: Config{}, want: InboxOn, nice: 10},
		// A command waits on the Temporal of the server it started.
		{name: "embedded, in the background", cfg: Config{Background: true}, want: InboxOn},
		// A server on a cluster may have no disk that outlives it.
		{name: "cluster", cfg: Config{TemporalAddress: "t:7233"}, want: InboxOff},
		{name: "cluster, asked for", cfg: Config{TemporalAddress: "t:7233", Inbox: "on"}, want: InboxOn},
		{name: "embedded, off", cfg: Config{Inbox: "off"}, want: InboxOff},
		{name: "unknown", cfg: Config{Inbox: "yes"}, err: `--inbox "yes": give on`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.checkTemporal(); err != nil {
				t.Fatal(err)
			}
			err := tc.cfg.checkInbox()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("checkInbox: %v", err)
			case tc.err == "" && tc.cfg.Inbox != tc.want:
				t.Errorf("Inbox = %q, want %q", tc.cfg.Inbox, tc.want)
			case tc.err == "" && temporalNice(tc.cfg) != tc.nice:
				t.Errorf("the embedded Temporal's nice value = %d, want %d", temporalNice(tc.cfg), tc.nice)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("checkInbox = %v, want an error containing %q", err, tc.err)
			}
		})
	}
	// server.hcl and SLUICE_INBOX set it too; flags win.
	p := writeConfig(t, `inbox = "off"`)
	var c Config
	if err := c.LoadFile(p); err != nil || c.Inbox != InboxOff {
		t.Errorf("inbox = \"off\" in server.hcl: %q, %v", c.Inbox, err)
	}
	c = Config{}
	if err := c.FromEnv(env(map[string]string{"SLUICE_INBOX": "on"})); err != nil || c.Inbox != InboxOn {
		t.Errorf("SLUICE_INBOX=on: %q, %v", c.Inbox, err)
	}
	c = Config{Inbox: InboxOff}
	if err := c.FromEnv(env(map[string]string{"SLUICE_INBOX": "on"})); err != nil || c.Inbox != InboxOff {
		t.Errorf("--inbox off with SLUICE_INBOX=on: %q, %v", c.Inbox, err)
	}
}
