package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// edit returns payload with some fields changed, for variants that no real
// example covers.
func edit(t testing.TB, payload []byte, change func(p map[string]any)) []byte {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	change(p)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// obj returns the object at path in p.
func obj(p map[string]any, path ...string) map[string]any {
	for _, k := range path {
		p = p[k].(map[string]any)
	}
	return p
}

const (
	helloRepo  = "Codertocat/Hello-World"
	helloClone = "https://github.com/Codertocat/Hello-World.git"
	prHeadSHA  = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	prBaseSHA  = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
	pushSHA    = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
)

// hello is the repository and sender most fixtures share.
func hello(ev Event) Event {
	ev.Delivery = testDeliveryID
	if ev.Repo == "" {
		ev.Repo, ev.CloneURL, ev.DefaultBranch = helloRepo, helloClone, "master"
	}
	if ev.Actor == "" {
		ev.Actor = "Codertocat"
	}
	return ev
}

func prOpened(pr PullRequest) PullRequest {
	if pr.Number == 0 {
		pr.Number = 2
	}
	pr.HeadSHA, pr.HeadRef, pr.BaseRef, pr.BaseSHA = prHeadSHA, "changes", "master", prBaseSHA
	if pr.HeadRepo == "" && !pr.Fork {
		pr.HeadRepo = helloRepo
	}
	return pr
}

// TestParseFixtures sends each fixture through Read, as GitHub would, and
// checks every field Parse gives.
func TestParseFixtures(t *testing.T) {
	prEvent := func(action string, inst int64, pr PullRequest) Event {
		return hello(Event{
			Kind: KindPullRequest, Name: "pull_request", Action: action, InstallationID: inst,
			Ref: "refs/pull/2/head", Branch: "changes", After: prHeadSHA, PullRequest: &pr,
		})
	}
	tests := []struct {
		name    string
		event   string
		fixture string
		change  func(p map[string]any) // nil: the fixture as it is
		want    Event
	}{
		{
			name: "branch push creating the branch", event: "push", fixture: "push/with-new-branch.payload.json",
			want: hello(Event{
				Kind: KindPush, Name: "push", InstallationID: 1,
				Ref: "refs/heads/master", Branch: "master", Before: zeroSHA, After: pushSHA,
				Created: true, HeadCommitMessage: "Initial commit",
			}),
		},
		{
			name: "forced branch push", event: "push", fixture: "push/with-new-branch.payload.json",
			change: func(p map[string]any) {
				p["ref"], p["before"], p["created"], p["forced"] = "refs/heads/feature/x", prBaseSHA, false, true
				obj(p, "head_commit")["message"] = "fix: things [skip ci]"
			},
			want: hello(Event{
				Kind: KindPush, Name: "push", InstallationID: 1,
				Ref: "refs/heads/feature/x", Branch: "feature/x", Before: prBaseSHA, After: pushSHA,
				Forced: true, HeadCommitMessage: "fix: things [skip ci]",
			}),
		},
		{
			name: "tag push", event: "push", fixture: "push/with-new-branch.payload.json",
			change: func(p map[string]any) { p["ref"] = "refs/tags/v1.0.0" },
			want: hello(Event{
				Kind: KindTag, Name: "push", InstallationID: 1,
				Ref: "refs/tags/v1.0.0", Tag: "v1.0.0", Before: zeroSHA, After: pushSHA,
				Created: true, HeadCommitMessage: "Initial commit",
			}),
		},
		{
			name: "push deleting a tag is ignored", event: "push", fixture: "push/with-installation.payload.json",
			want: hello(Event{
				Kind: KindIgnored, Name: "push", InstallationID: 1, Ignored: "deletion of refs/tags/simple-tag",
				Ref: "refs/tags/simple-tag", Before: pushSHA, After: zeroSHA,
			}),
		},
		{
			name: "push deleting a branch is ignored", event: "push", fixture: "push/with-installation.payload.json",
			change: func(p map[string]any) { p["ref"] = "refs/heads/old" },
			want: hello(Event{
				Kind: KindIgnored, Name: "push", InstallationID: 1, Ignored: "deletion of refs/heads/old",
				Ref: "refs/heads/old", Before: pushSHA, After: zeroSHA,
			}),
		},
		{
			name: "create of a tag is ignored: the push is handled", event: "create", fixture: "create/with-installation.payload.json",
			want: hello(Event{
				Kind: KindIgnored, Name: "create", InstallationID: 1, Ref: "refs/tags/simple-tag",
				Ignored: "tag creation already seen as a push: GitHub also sends a push event for refs/tags/simple-tag, which is handled there",
			}),
		},
		{
			name: "create of a branch is ignored: the push is handled", event: "create", fixture: "create/with-installation.payload.json",
			change: func(p map[string]any) { p["ref"], p["ref_type"] = "feature", "branch" },
			want: hello(Event{
				Kind: KindIgnored, Name: "create", InstallationID: 1, Ref: "refs/heads/feature",
				Ignored: "branch creation already seen as a push: GitHub also sends a push event for refs/heads/feature, which is handled there",
			}),
		},
		{
			name: "delete is ignored", event: "delete", fixture: "delete/with-installation.payload.json",
			want: hello(Event{
				Kind: KindIgnored, Name: "delete", InstallationID: 1, Ref: "refs/tags/simple-tag",
				Ignored: `deletion of tag "simple-tag"`,
			}),
		},
		{
			name: "ping", event: "ping", fixture: "ping/with-app_id.payload.json",
			want: hello(Event{
				Kind: KindPing, Name: "ping",
				Repo: "Octocoders/Hello-World", CloneURL: "https://github.com/Octocoders/Hello-World.git", DefaultBranch: "master",
			}),
		},
		{
			name: "pull request opened", event: "pull_request", fixture: "pull_request/opened.payload.json",
			want: prEvent("opened", 1, prOpened(PullRequest{})),
		},
		{
			name: "pull request synchronize", event: "pull_request", fixture: "pull_request/synchronize.payload.json",
			want: func() Event {
				ev := prEvent("synchronize", 1, prOpened(PullRequest{}))
				ev.Before = prBaseSHA // the payload's own before
				return ev
			}(),
		},
		{
			name: "pull request reopened", event: "pull_request", fixture: "pull_request/reopened.payload.json",
			want: prEvent("reopened", 1, prOpened(PullRequest{})),
		},
		{
			name: "pull request ready for review", event: "pull_request", fixture: "pull_request/ready_for_review.with-installation.payload.json",
			want: prEvent("ready_for_review", 1, prOpened(PullRequest{})),
		},
		{
			name: "draft pull request opened", event: "pull_request", fixture: "pull_request/opened.payload.json",
			change: func(p map[string]any) { obj(p, "pull_request")["draft"] = true },
			want:   prEvent("opened", 1, prOpened(PullRequest{Draft: true})),
		},
		{
			name: "pull request from a fork", event: "pull_request", fixture: "pull_request/opened.payload.json",
			change: func(p map[string]any) {
				repo := obj(p, "pull_request", "head", "repo")
				repo["id"], repo["full_name"] = 999, "forker/Hello-World"
			},
			want: prEvent("opened", 1, prOpened(PullRequest{HeadRepo: "forker/Hello-World", Fork: true})),
		},
		{
			name: "pull request from a renamed repository of the same ID is no fork", event: "pull_request", fixture: "pull_request/opened.payload.json",
			change: func(p map[string]any) {
				obj(p, "pull_request", "head", "repo")["full_name"] = "Codertocat/Hello-Old-Name"
			},
			want: prEvent("opened", 1, prOpened(PullRequest{HeadRepo: "Codertocat/Hello-Old-Name"})),
		},
		{
			name: "pull request from a deleted fork", event: "pull_request", fixture: "pull_request/opened.payload.json",
			change: func(p map[string]any) { obj(p, "pull_request", "head")["repo"] = nil },
			want:   prEvent("opened", 1, prOpened(PullRequest{Fork: true})),
		},
		{
			name: "pull request closed is ignored", event: "pull_request", fixture: "pull_request/closed.payload.json",
			want: hello(Event{
				Kind: KindIgnored, Name: "pull_request", Action: "closed", InstallationID: 1,
				Ignored: `pull_request action "closed" is not one Sluice acts on`,
			}),
		},
		{
			name: "check suite rerequested", event: "check_suite", fixture: "check_suite/rerequested.payload.json",
			want: hello(Event{
				Kind: KindRerun, Name: "check_suite", Action: "rerequested", InstallationID: 957387,
				Actor: "octocoders-linter[bot]", After: prHeadSHA,
				Rerun: &Rerun{CheckSuiteID: 118578147, HeadSHA: prHeadSHA, HeadBranch: "changes", PullRequests: []int{2}},
			}),
		},
		{
			name: "check suite rerequested for a fork pull request", event: "check_suite", fixture: "check_suite/rerequested.payload.json",
			change: func(p map[string]any) {
				cs := obj(p, "check_suite")
				cs["head_branch"], cs["pull_requests"] = nil, []any{}
			},
			want: hello(Event{
				Kind: KindRerun, Name: "check_suite", Action: "rerequested", InstallationID: 957387,
				Actor: "octocoders-linter[bot]", After: prHeadSHA,
				Rerun: &Rerun{CheckSuiteID: 118578147, HeadSHA: prHeadSHA, PullRequests: []int{}},
			}),
		},
		{
			name: "check suite rerequested lists only this repository's pull requests", event: "check_suite", fixture: "check_suite/rerequested.payload.json",
			change: func(p map[string]any) {
				prs := obj(p, "check_suite")["pull_requests"].([]any)
				other := edit(t, mustJSON(t, prs[0]), func(pr map[string]any) {
					pr["number"] = 7
					obj(pr, "base", "repo")["id"] = 4242
				})
				var o any
				_ = json.Unmarshal(other, &o)
				obj(p, "check_suite")["pull_requests"] = append(prs, o)
			},
			want: hello(Event{
				Kind: KindRerun, Name: "check_suite", Action: "rerequested", InstallationID: 957387,
				Actor: "octocoders-linter[bot]", After: prHeadSHA,
				Rerun: &Rerun{CheckSuiteID: 118578147, HeadSHA: prHeadSHA, HeadBranch: "changes", PullRequests: []int{2}},
			}),
		},
		{
			name: "check suite requested is ignored", event: "check_suite", fixture: "check_suite/requested.payload.json",
			want: hello(Event{
				Kind: KindIgnored, Name: "check_suite", Action: "requested", InstallationID: 957387,
				Ignored: `check_suite action "requested" is not one Sluice acts on`,
			}),
		},
		{
			name: "check run rerequested", event: "check_run", fixture: "check_run/rerequested.payload.json",
			want: Event{
				Kind: KindRerun, Delivery: testDeliveryID, Name: "check_run", Action: "rerequested", InstallationID: 1,
				Repo: "github/hello-world", CloneURL: "http://github.com/github/hello-world.git", DefaultBranch: "master",
				Actor: "octocat", After: "d6fde92930d4715a2b49857d24b940956b26d2d3",
				Rerun: &Rerun{
					CheckSuiteID: 5, CheckRunID: 4, CheckRunName: "randscape",
					HeadSHA: "d6fde92930d4715a2b49857d24b940956b26d2d3", HeadBranch: "master", PullRequests: []int{},
				},
			},
		},
		{
			name: "check run requested action", event: "check_run", fixture: "check_run/requested_action.payload.json",
			want: Event{
				Kind: KindAction, Delivery: testDeliveryID, Name: "check_run", Action: "requested_action", InstallationID: 690857,
				Repo: "electron/electron", CloneURL: "https://github.com/electron/electron.git", DefaultBranch: "master",
				Actor: "codebytere", After: "5bd5f196a46b8222fb7484f05faba41a73cf34bd",
				RequestedAction: &RequestedAction{
					Identifier: "lgtm|26764", CheckRunID: 1494503112, HeadSHA: "5bd5f196a46b8222fb7484f05faba41a73cf34bd",
				},
			},
		},
		{
			name: "check run completed is ignored", event: "check_run", fixture: "check_run/completed.payload.json",
			want: hello(Event{
				Kind: KindIgnored, Name: "check_run", Action: "completed",
				Ignored: `check_run action "completed" is not one Sluice acts on`,
			}),
		},
		{
			name: "comment on an issue is ignored", event: "issue_comment", fixture: "issue_comment/created.payload.json",
			want: hello(Event{
				Kind: KindIgnored, Name: "issue_comment", Action: "created",
				Ignored: "comment on issue #1, not on a pull request",
			}),
		},
		{
			name: "comment on a pull request with a command", event: "issue_comment", fixture: "issue_comment/created.payload.json",
			change: func(p map[string]any) {
				obj(p, "issue")["pull_request"] = map[string]any{"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
				obj(p, "comment")["body"] = "Looks fine.\r\n/sluice ok-to-test\r\n"
			},
			want: hello(Event{
				Kind: KindComment, Name: "issue_comment", Action: "created",
				Comment: &Comment{ID: 492700400, Number: 1, Body: "Looks fine.\r\n/sluice ok-to-test\r\n", AuthorAssociation: "OWNER"},
			}),
		},
		{
			name: "comment on a pull request without a command is ignored", event: "issue_comment", fixture: "issue_comment/created.payload.json",
			change: func(p map[string]any) {
				obj(p, "issue")["pull_request"] = map[string]any{"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
			},
			want: hello(Event{
				Kind: KindIgnored, Name: "issue_comment", Action: "created",
				Ignored: "comment on pull request #1 has no /sluice command",
			}),
		},
		{
			name: "a command in an App's own comment is ignored", event: "issue_comment", fixture: "issue_comment/created.payload.json",
			change: func(p map[string]any) {
				obj(p, "issue")["pull_request"] = map[string]any{"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
				obj(p, "comment")["body"] = "/sluice cancel"
				obj(p, "comment")["performed_via_github_app"] = map[string]any{"id": 1, "slug": "sluice"}
			},
			want: hello(Event{
				Kind: KindIgnored, Name: "issue_comment", Action: "created",
				Ignored: "comment on pull request #1 has no /sluice command",
			}),
		},
		{
			name: "installation created (hand-written fixture)", event: "installation", fixture: "installation/created.payload.json",
			want: Event{
				Kind: KindInstallation, Delivery: testDeliveryID, Name: "installation", Action: "created",
				InstallationID: 4242, Actor: "octocat",
				Installation: &Installation{Action: "created", All: []string{"octo-org/hello-world", "octo-org/secret-sauce"}},
			},
		},
		{
			name: "installation repositories changed (hand-written fixture)", event: "installation_repositories", fixture: "installation_repositories/added.payload.json",
			want: Event{
				Kind: KindInstallation, Delivery: testDeliveryID, Name: "installation_repositories", Action: "added",
				InstallationID: 4242, Actor: "octocat",
				Installation: &Installation{Action: "added", Added: []string{"octo-org/new-service"}, Removed: []string{"octo-org/secret-sauce"}},
			},
		},
	}
	v := testVerifier(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := fixture(t, tt.fixture)
			if tt.change != nil {
				body = edit(t, body, tt.change)
			}
			d, herr := v.Read(post(tt.event, body))
			if herr != nil {
				t.Fatalf("Read refused: %v", herr)
			}
			got, err := Parse(d)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse =\n%s\nwant\n%s", dump(t, got), dump(t, tt.want))
			}
		})
	}
}

func TestParseIgnored(t *testing.T) {
	tests := []struct {
		name       string
		event      string
		payload    string
		wantReason string
	}{
		{
			name: "unknown event issues", event: "issues",
			payload:    `{"action":"opened","issue":{"number":1},"repository":{"full_name":"o/r"},"sender":{"login":"u"}}`,
			wantReason: `event "issues" is not one Sluice acts on`,
		},
		{
			name: "unknown event whose payload has odd types", event: "issues",
			payload:    `{"action":5,"repository":"o/r"}`,
			wantReason: `event "issues" is not one Sluice acts on`,
		},
		{
			name: "push to a ref that is neither branch nor tag", event: "push",
			payload:    `{"ref":"refs/notes/commits","after":"` + pushSHA + `","repository":{"full_name":"o/r"}}`,
			wantReason: "push to refs/notes/commits, which is neither a branch nor a tag",
		},
		{
			name: "pull request labeled", event: "pull_request",
			payload:    `{"action":"labeled","number":1,"repository":{"full_name":"o/r"}}`,
			wantReason: `pull_request action "labeled" is not one Sluice acts on`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Parse(&Delivery{ID: testDeliveryID, Event: tt.event, Payload: []byte(tt.payload)})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if ev.Kind != KindIgnored || ev.Ignored != tt.wantReason {
				t.Errorf("Parse = kind %q, ignored %q; want %q, %q", ev.Kind, ev.Ignored, KindIgnored, tt.wantReason)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		event   string
		payload string
		wantErr string
	}{
		{name: "push without ref", event: "push", payload: `{"after":"` + pushSHA + `","repository":{"full_name":"o/r"}}`, wantErr: "push event: payload has no ref"},
		{name: "push without repository", event: "push", payload: `{"ref":"refs/heads/main","after":"` + pushSHA + `"}`, wantErr: "payload has no repository.full_name"},
		{name: "push without after", event: "push", payload: `{"ref":"refs/heads/main","repository":{"full_name":"o/r"}}`, wantErr: "has no after SHA"},
		{name: "push with a ref of the wrong type", event: "push", payload: `{"ref":5}`, wantErr: "push event: malformed payload"},
		{name: "payload not an object", event: "push", payload: `[1]`, wantErr: "malformed payload"},
		{name: "pull request opened without pull_request", event: "pull_request", payload: `{"action":"opened","number":1,"repository":{"full_name":"o/r"}}`, wantErr: "payload has no pull_request"},
		{name: "pull request without head", event: "pull_request", payload: `{"action":"opened","number":1,"repository":{"full_name":"o/r"},"pull_request":{"base":{"ref":"main"}}}`, wantErr: "head.sha"},
		{name: "check suite rerequested without check_suite", event: "check_suite", payload: `{"action":"rerequested","repository":{"full_name":"o/r"}}`, wantErr: "no check_suite"},
		{name: "check run rerequested without check_run", event: "check_run", payload: `{"action":"rerequested","repository":{"full_name":"o/r"}}`, wantErr: "no check_run"},
		{name: "requested action without identifier", event: "check_run", payload: `{"action":"requested_action","repository":{"full_name":"o/r"},"check_run":{"id":1,"head_sha":"abc"}}`, wantErr: "requested_action.identifier"},
		{name: "installation without id", event: "installation", payload: `{"action":"created"}`, wantErr: "installation event: payload has no installation.id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Parse(&Delivery{ID: testDeliveryID, Event: tt.event, Payload: []byte(tt.payload)})
			if err == nil {
				t.Fatalf("Parse = %+v, want an error", ev)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Parse error %q, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(filepath.Base(filepath.Dir(file)), b)
	}
	f.Add("push", []byte(`{"ref":"refs/tags/","after":"x","repository":{"full_name":"o/r"}}`))
	f.Add("pull_request", []byte(`{"action":"opened","pull_request":{"head":{"repo":null}}}`))
	f.Add("check_run", []byte(`{"action":"requested_action","check_run":null}`))
	f.Add("installation_repositories", []byte(`null`))
	f.Fuzz(func(t *testing.T, event string, payload []byte) {
		ev, err := Parse(&Delivery{ID: "fuzz", Event: event, Payload: payload})
		if err != nil {
			return
		}
		switch ev.Kind {
		case KindPush, KindTag, KindPullRequest, KindRerun, KindAction, KindInstallation, KindPing:
			if ev.Ignored != "" {
				t.Errorf("kind %q with an ignored reason %q", ev.Kind, ev.Ignored)
			}
		case KindIgnored:
			if ev.Ignored == "" {
				t.Errorf("ignored without a reason")
			}
		default:
			t.Errorf("unknown kind %q", ev.Kind)
		}
		if (ev.Kind == KindPullRequest) != (ev.PullRequest != nil) ||
			(ev.Kind == KindRerun) != (ev.Rerun != nil) ||
			(ev.Kind == KindAction) != (ev.RequestedAction != nil) ||
			(ev.Kind == KindInstallation) != (ev.Installation != nil) {
			t.Errorf("kind %q does not match the detail set: %+v", ev.Kind, ev)
		}
	})
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dump(t testing.TB, ev Event) string {
	return string(mustJSON(t, ev))
}

func TestCommands(t *testing.T) {
	body := "Thanks!\r\n/sluice retry build\r\n> /sluice cancel\n```\n/sluice approve deploy\n```\n  /sluice APPROVE deploy  \n/sluicex no\n/sluice"
	got := Commands(body)
	want := []Command{
		{Name: "retry", Args: []string{"build"}, Line: "/sluice retry build"},
		{Name: "approve", Args: []string{"deploy"}, Line: "/sluice APPROVE deploy"},
		{Name: "", Args: nil, Line: "/sluice"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Commands = %#v\nwant %#v", got, want)
	}
	if HasCommand("no commands here /sluice retry") {
		t.Error("a /sluice in the middle of a line is no command")
	}
}
