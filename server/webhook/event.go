package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kinds of Event: what the server does with a delivery depends only on the
// Kind, so that GitHub's many event and action names are mapped in one
// place.
const (
	// KindPush is a push to a branch.
	KindPush = "push"
	// KindTag is a tag pushed: a push event for refs/tags/NAME. (The create
	// event GitHub sends with it is ignored; see the package comment.)
	KindTag = "tag"
	// KindPullRequest is a pull request opened, updated (synchronize),
	// reopened or marked ready for review; drafts included, with Draft set.
	KindPullRequest = "pull_request"
	// KindRerun is a "Re-run" clicked in the Checks UI: check_suite or
	// check_run with action rerequested.
	KindRerun = "rerun"
	// KindAction is a button of a check run clicked (check_run
	// requested_action), used for approve/reject.
	KindAction = "requested_action"
	// KindComment is a comment created on a pull request: Sluice reads
	// /sluice commands in it. Comments on issues are ignored.
	KindComment = "comment"
	// KindInstallation is the App installed, removed, or given access to
	// more or fewer repositories (installation, installation_repositories).
	KindInstallation = "installation"
	// KindPing is the ping GitHub sends when a hook is set up.
	KindPing = "ping"
	// KindIgnored is any delivery Sluice does not act on; Event.Ignored says
	// why, for the log.
	KindIgnored = "ignored"
)

// zeroSHA is the before (or after) of a push that creates (or deletes) a ref.
const zeroSHA = "0000000000000000000000000000000000000000"

// Event is a delivery normalised into the fields Sluice acts on, whatever
// GitHub event it came from, so that the server reads one shape.
type Event struct {
	Kind     string // one of the Kind constants
	Delivery string // delivery ID (X-GitHub-Delivery)
	Name     string // event name (X-GitHub-Event)
	Action   string // the payload's top-level "action", if any
	Ignored  string // for KindIgnored: why

	InstallationID int64  // installation.id; 0 for a non-App hook
	Repo           string // owner/name (repository.full_name)
	CloneURL       string // repository.clone_url
	DefaultBranch  string // repository.default_branch
	Private        bool   // repository.private
	Actor          string // sender.login

	// Ref is the full ref: refs/heads/main, refs/tags/v1, or for a pull
	// request refs/pull/N/head.
	Ref    string
	Branch string // for a push: the branch; for a pull request: its head branch
	Tag    string // for a tag: its name
	Before string // the previous head; all zeros for a new ref
	// After is the head SHA the event is about: the pushed commit, the pull
	// request's head.sha, or a re-run's head_sha.
	After             string
	Created           bool   // the push created the ref
	Forced            bool   // the push was forced
	HeadCommitMessage string // head_commit.message, for [skip ci]

	PullRequest     *PullRequest     // for KindPullRequest
	Rerun           *Rerun           // for KindRerun
	RequestedAction *RequestedAction // for KindAction
	Installation    *Installation    // for KindInstallation
	Comment         *Comment         // for KindComment
}

// Comment is a comment on a pull request. Who wrote it is Event.Actor;
// the pull request's head is not in the payload, so the server asks
// GitHub for it.
type Comment struct {
	ID     int64
	Number int // the pull request's number
	Body   string
	// AuthorAssociation is GitHub's word for the author (OWNER, MEMBER,
	// COLLABORATOR, CONTRIBUTOR, NONE...): a hint only; permissions are
	// checked with GitHub.
	AuthorAssociation string
	// FromApp is set when the comment was made by a GitHub App (Sluice's
	// own replies among them): never read for commands.
	FromApp bool
}

// PullRequest is what a pull request event says about the pull request,
// including whether its head is in another repository (a fork), which
// decides whether secrets may be exposed to its run.
type PullRequest struct {
	Number   int
	HeadSHA  string
	HeadRef  string // the head branch name, in HeadRepo
	HeadRepo string // owner/name of the head repository; "" when that repository was deleted
	BaseRef  string
	BaseSHA  string
	// Fork is true when the head repository is not the base repository, or
	// is unknown (deleted): such code is untrusted.
	Fork  bool
	Draft bool
}

// Rerun is a re-run request from the Checks UI, so the server can find the
// run to repeat.
type Rerun struct {
	CheckSuiteID int64
	CheckRunID   int64 // 0 for a check_suite re-run
	CheckRunName string
	ExternalID   string
	HeadSHA      string
	// HeadBranch may be empty: GitHub sends head_branch null for the check
	// suites of pull requests from forks.
	HeadBranch string
	// PullRequests are the numbers of this repository's pull requests with
	// this head. It may be empty (GitHub lists none for pull requests from
	// forks): callers must then resolve the run by HeadSHA.
	PullRequests []int
}

// RequestedAction is a check run button clicked, identified by the
// identifier Sluice gave the button when it created the check run.
type RequestedAction struct {
	Identifier string
	CheckRunID int64
	ExternalID string
	HeadSHA    string
}

// Installation is a change to the App's installation, so the server can
// track which repositories it may act on.
type Installation struct {
	Action  string   // created, deleted, suspend, ..., added, removed
	Added   []string // owner/name: installation_repositories added
	Removed []string // owner/name: installation_repositories removed
	// All is the repositories an installation event lists: on "created",
	// every repository the installation can access.
	All []string
}

// The payload shapes, reduced to the fields Parse reads.

type account struct {
	Login string `json:"login"`
}

type repository struct {
	ID            int64  `json:"id"`
	FullName      string `json:"full_name"`
	CloneURL      string `json:"clone_url"`
	DefaultBranch string `json:"default_branch"`
	Private       bool   `json:"private"`
}

type common struct {
	Action       string `json:"action"`
	Installation *struct {
		ID int64 `json:"id"`
	} `json:"installation"`
	Repository *repository `json:"repository"`
	Sender     *account    `json:"sender"`
}

type pushPayload struct {
	common
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Created    bool   `json:"created"`
	Deleted    bool   `json:"deleted"`
	Forced     bool   `json:"forced"`
	HeadCommit *struct {
		Message string `json:"message"`
	} `json:"head_commit"`
}

type refPayload struct {
	common
	Ref     string `json:"ref"`
	RefType string `json:"ref_type"`
}

type branch struct {
	Ref  string      `json:"ref"`
	SHA  string      `json:"sha"`
	Repo *repository `json:"repo"`
}

type pullRequestPayload struct {
	common
	Number      int    `json:"number"`
	Before      string `json:"before"`
	PullRequest *struct {
		Number int    `json:"number"`
		Draft  bool   `json:"draft"`
		Head   branch `json:"head"`
		Base   branch `json:"base"`
	} `json:"pull_request"`
}

// checkPullRequest is an entry of a check suite's or run's pull_requests.
type checkPullRequest struct {
	Number int    `json:"number"`
	Base   branch `json:"base"`
}

type checkSuite struct {
	ID           int64              `json:"id"`
	HeadSHA      string             `json:"head_sha"`
	HeadBranch   *string            `json:"head_branch"`
	PullRequests []checkPullRequest `json:"pull_requests"`
}

type checkSuitePayload struct {
	common
	CheckSuite *checkSuite `json:"check_suite"`
}

type checkRunPayload struct {
	common
	CheckRun *struct {
		ID           int64              `json:"id"`
		Name         string             `json:"name"`
		ExternalID   string             `json:"external_id"`
		HeadSHA      string             `json:"head_sha"`
		CheckSuite   *checkSuite        `json:"check_suite"`
		PullRequests []checkPullRequest `json:"pull_requests"`
	} `json:"check_run"`
	RequestedAction *struct {
		Identifier string `json:"identifier"`
	} `json:"requested_action"`
}

type commentPayload struct {
	common
	Issue *struct {
		Number      int             `json:"number"`
		PullRequest json.RawMessage `json:"pull_request"`
	} `json:"issue"`
	Comment *struct {
		ID                    int64           `json:"id"`
		Body                  string          `json:"body"`
		AuthorAssociation     string          `json:"author_association"`
		PerformedViaGitHubApp json.RawMessage `json:"performed_via_github_app"`
		User                  *struct {
			Type string `json:"type"`
		} `json:"user"`
	} `json:"comment"`
}

type installationPayload struct {
	common
	Repositories        []repository `json:"repositories"`
	RepositoriesAdded   []repository `json:"repositories_added"`
	RepositoriesRemoved []repository `json:"repositories_removed"`
}

// Parse normalises a verified delivery into an Event. Every field is read
// from the signed payload; only Delivery and Name come from d's headers.
//
// Parse returns an error only for a payload that lacks what its event
// needs (for a push, the ref and repository; for a pull request, the pull
// request...), which the caller answers with 400. Events and actions Sluice
// does not act on are not errors: they give KindIgnored with a reason, so
// that GitHub records the delivery as a success.
func Parse(d *Delivery) (Event, error) {
	if d == nil {
		return Event{}, errors.New("no delivery")
	}
	ev := Event{Delivery: d.ID, Name: d.Event}
	var err error
	switch d.Event {
	case "push":
		err = parsePush(d.Payload, &ev)
	case "create", "delete":
		err = parseRef(d.Payload, &ev)
	case "pull_request":
		err = parsePullRequest(d.Payload, &ev)
	case "check_suite":
		err = parseCheckSuite(d.Payload, &ev)
	case "check_run":
		err = parseCheckRun(d.Payload, &ev)
	case "installation", "installation_repositories":
		err = parseInstallation(d.Payload, &ev)
	case "issue_comment":
		err = parseComment(d.Payload, &ev)
	case "ping":
		var p common
		if err = decode(d.Payload, &p); err == nil {
			ev.Kind = KindPing
			p.fill(&ev)
		}
	default:
		// Nothing of the payload is needed, so a payload of another shape
		// is no error: the common fields are filled when they decode.
		var p common
		if json.Unmarshal(d.Payload, &p) == nil {
			p.fill(&ev)
		}
		ignore(&ev, "event %q is not one Sluice acts on", d.Event)
	}
	if err != nil {
		return Event{}, fmt.Errorf("%s event: %w", d.Event, err)
	}
	return ev, nil
}

func decode(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("malformed payload: %w", err)
	}
	return nil
}

func ignore(ev *Event, format string, args ...any) {
	ev.Kind = KindIgnored
	ev.Ignored = fmt.Sprintf(format, args...)
}

// fill copies the fields every event may carry.
func (c *common) fill(ev *Event) {
	ev.Action = c.Action
	if c.Installation != nil {
		ev.InstallationID = c.Installation.ID
	}
	if r := c.Repository; r != nil {
		ev.Repo = r.FullName
		ev.CloneURL = r.CloneURL
		ev.DefaultBranch = r.DefaultBranch
		ev.Private = r.Private
	}
	if c.Sender != nil {
		ev.Actor = c.Sender.Login
	}
}

// needRepo refuses an event about a repository that does not name it.
func (c *common) needRepo() error {
	if c.Repository == nil || c.Repository.FullName == "" {
		return errors.New("payload has no repository.full_name")
	}
	return nil
}

func parsePush(payload []byte, ev *Event) error {
	var p pushPayload
	if err := decode(payload, &p); err != nil {
		return err
	}
	if err := p.needRepo(); err != nil {
		return err
	}
	if p.Ref == "" {
		return errors.New("payload has no ref")
	}
	p.fill(ev)
	ev.Ref, ev.Before, ev.After = p.Ref, p.Before, p.After
	ev.Created, ev.Forced = p.Created, p.Forced
	if p.HeadCommit != nil {
		ev.HeadCommitMessage = p.HeadCommit.Message
	}
	if p.Deleted {
		ignore(ev, "deletion of %s", p.Ref)
		return nil
	}
	if p.After == "" || p.After == zeroSHA {
		return fmt.Errorf("push to %s that deletes nothing has no after SHA", p.Ref)
	}
	if name, ok := strings.CutPrefix(p.Ref, "refs/heads/"); ok && name != "" {
		ev.Kind, ev.Branch = KindPush, name
		return nil
	}
	if name, ok := strings.CutPrefix(p.Ref, "refs/tags/"); ok && name != "" {
		ev.Kind, ev.Tag = KindTag, name
		return nil
	}
	ignore(ev, "push to %s, which is neither a branch nor a tag", p.Ref)
	return nil
}

// parseRef handles create and delete events, which Sluice never acts on:
// see the package comment.
func parseRef(payload []byte, ev *Event) error {
	var p refPayload
	if err := decode(payload, &p); err != nil {
		return err
	}
	p.fill(ev)
	switch p.RefType {
	case "tag":
		ev.Ref = "refs/tags/" + p.Ref
	case "branch":
		ev.Ref = "refs/heads/" + p.Ref
	}
	switch {
	case ev.Name == "delete":
		ignore(ev, "deletion of %s %q", p.RefType, p.Ref)
	case ev.Ref != "":
		ignore(ev, "%s creation already seen as a push: GitHub also sends a push event for %s, which is handled there", p.RefType, ev.Ref)
	default:
		ignore(ev, "creation of %s %q", p.RefType, p.Ref)
	}
	return nil
}

func parsePullRequest(payload []byte, ev *Event) error {
	var p pullRequestPayload
	if err := decode(payload, &p); err != nil {
		return err
	}
	p.fill(ev)
	switch p.Action {
	case "opened", "synchronize", "reopened", "ready_for_review":
	default:
		ignore(ev, "pull_request action %q is not one Sluice acts on", p.Action)
		return nil
	}
	if err := p.needRepo(); err != nil {
		return err
	}
	pr := p.PullRequest
	if pr == nil {
		return errors.New("payload has no pull_request")
	}
	n := p.Number
	if n == 0 {
		n = pr.Number
	}
	switch {
	case n <= 0:
		return errors.New("payload has no pull request number")
	case pr.Head.SHA == "" || pr.Head.Ref == "":
		return errors.New("payload has no pull_request.head.sha or head.ref")
	case pr.Base.Ref == "":
		return errors.New("payload has no pull_request.base.ref")
	}
	out := &PullRequest{
		Number:  n,
		HeadSHA: pr.Head.SHA,
		HeadRef: pr.Head.Ref,
		BaseRef: pr.Base.Ref,
		BaseSHA: pr.Base.SHA,
		Draft:   pr.Draft,
	}
	base := pr.Base.Repo
	if base == nil {
		base = p.Repository
	}
	if head := pr.Head.Repo; head != nil {
		out.HeadRepo = head.FullName
		out.Fork = !sameRepo(head, base)
	} else {
		out.Fork = true // the head repository was deleted: nothing says it was ours
	}
	ev.Kind = KindPullRequest
	ev.PullRequest = out
	ev.Ref = "refs/pull/" + strconv.Itoa(n) + "/head"
	ev.Branch = pr.Head.Ref
	ev.After = pr.Head.SHA
	ev.Before = p.Before // set on synchronize
	return nil
}

// sameRepo compares by ID, which survives renames and transfers, and falls
// back to the name (case-insensitive, as GitHub's are) when an ID is absent.
func sameRepo(a, b *repository) bool {
	if a.ID != 0 && b.ID != 0 {
		return a.ID == b.ID
	}
	return a.FullName != "" && strings.EqualFold(a.FullName, b.FullName)
}

// prNumbers lists the pull requests based in repo. GitHub may list pull
// requests of other repositories with the same head (a fork's own pull
// requests), which are not this repository's to re-run.
func prNumbers(prs []checkPullRequest, repo *repository) []int {
	out := []int{}
	for _, pr := range prs {
		if pr.Number <= 0 {
			continue
		}
		if b := pr.Base.Repo; b != nil && b.ID != 0 && repo.ID != 0 && b.ID != repo.ID {
			continue
		}
		out = append(out, pr.Number)
	}
	return out
}

func parseCheckSuite(payload []byte, ev *Event) error {
	var p checkSuitePayload
	if err := decode(payload, &p); err != nil {
		return err
	}
	p.fill(ev)
	if p.Action != "rerequested" {
		ignore(ev, "check_suite action %q is not one Sluice acts on", p.Action)
		return nil
	}
	if err := p.needRepo(); err != nil {
		return err
	}
	cs := p.CheckSuite
	if cs == nil || cs.ID == 0 || cs.HeadSHA == "" {
		return errors.New("payload has no check_suite with id and head_sha")
	}
	ev.Kind = KindRerun
	ev.After = cs.HeadSHA
	ev.Rerun = &Rerun{
		CheckSuiteID: cs.ID,
		HeadSHA:      cs.HeadSHA,
		HeadBranch:   deref(cs.HeadBranch),
		PullRequests: prNumbers(cs.PullRequests, p.Repository),
	}
	return nil
}

func parseCheckRun(payload []byte, ev *Event) error {
	var p checkRunPayload
	if err := decode(payload, &p); err != nil {
		return err
	}
	p.fill(ev)
	if p.Action != "rerequested" && p.Action != "requested_action" {
		ignore(ev, "check_run action %q is not one Sluice acts on", p.Action)
		return nil
	}
	if err := p.needRepo(); err != nil {
		return err
	}
	cr := p.CheckRun
	if cr == nil || cr.ID == 0 || cr.HeadSHA == "" {
		return errors.New("payload has no check_run with id and head_sha")
	}
	ev.After = cr.HeadSHA
	if p.Action == "requested_action" {
		if p.RequestedAction == nil || p.RequestedAction.Identifier == "" {
			return errors.New("payload has no requested_action.identifier")
		}
		ev.Kind = KindAction
		ev.RequestedAction = &RequestedAction{
			Identifier: p.RequestedAction.Identifier,
			CheckRunID: cr.ID,
			ExternalID: cr.ExternalID,
			HeadSHA:    cr.HeadSHA,
		}
		return nil
	}
	rr := &Rerun{
		CheckRunID:   cr.ID,
		CheckRunName: cr.Name,
		ExternalID:   cr.ExternalID,
		HeadSHA:      cr.HeadSHA,
		PullRequests: prNumbers(cr.PullRequests, p.Repository),
	}
	if cs := cr.CheckSuite; cs != nil {
		rr.CheckSuiteID = cs.ID
		rr.HeadBranch = deref(cs.HeadBranch)
	}
	ev.Kind = KindRerun
	ev.Rerun = rr
	return nil
}

func parseInstallation(payload []byte, ev *Event) error {
	var p installationPayload
	if err := decode(payload, &p); err != nil {
		return err
	}
	if p.Installation == nil || p.Installation.ID == 0 {
		return errors.New("payload has no installation.id")
	}
	p.fill(ev)
	ev.Kind = KindInstallation
	ev.Installation = &Installation{
		Action:  p.Action,
		Added:   names(p.RepositoriesAdded),
		Removed: names(p.RepositoriesRemoved),
		All:     names(p.Repositories),
	}
	return nil
}

func names(repos []repository) []string {
	var out []string
	for _, r := range repos {
		if r.FullName != "" {
			out = append(out, r.FullName)
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// parseComment handles issue_comment: a created comment on a pull request
// (an issue with a pull_request field) that holds a /sluice command.
func parseComment(payload []byte, ev *Event) error {
	var p commentPayload
	if err := decode(payload, &p); err != nil {
		return err
	}
	p.fill(ev)
	if p.Action != "created" {
		ignore(ev, "issue_comment action %q is not one Sluice acts on", p.Action)
		return nil
	}
	if err := p.needRepo(); err != nil {
		return err
	}
	if p.Issue == nil || p.Issue.Number <= 0 || p.Comment == nil {
		return errors.New("payload has no issue with a number, or no comment")
	}
	if len(p.Issue.PullRequest) == 0 || string(p.Issue.PullRequest) == "null" {
		ignore(ev, "comment on issue #%d, not on a pull request", p.Issue.Number)
		return nil
	}
	c := p.Comment
	fromApp := len(c.PerformedViaGitHubApp) > 0 && string(c.PerformedViaGitHubApp) != "null" ||
		c.User != nil && c.User.Type == "Bot"
	if fromApp || !HasCommand(c.Body) {
		ignore(ev, "comment on pull request #%d has no /sluice command", p.Issue.Number)
		return nil
	}
	ev.Kind = KindComment
	ev.Comment = &Comment{ID: c.ID, Number: p.Issue.Number, Body: c.Body, AuthorAssociation: c.AuthorAssociation}
	return nil
}

// CommandPrefix starts a command in a pull request's comment.
const CommandPrefix = "/sluice"

// Command is one /sluice command of a comment: "/sluice retry build"
// gives {Name: "retry", Args: ["build"]}.
type Command struct {
	Name string
	Args []string
	Line string // the line as written
}

// Commands returns the /sluice commands of a comment, one per line that
// starts with /sluice (lines in fenced code blocks and quotes are not
// commands).
func Commands(body string) []Command {
	var out []Command
	fenced := false
	for _, line := range strings.Split(body, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "```") || strings.HasPrefix(t, "~~~") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		f := strings.Fields(t)
		if len(f) == 0 || f[0] != CommandPrefix {
			continue
		}
		c := Command{Line: t}
		if len(f) > 1 {
			c.Name = strings.ToLower(f[1])
			c.Args = f[2:]
		}
		out = append(out, c)
	}
	return out
}

// HasCommand says whether a comment holds a /sluice command.
func HasCommand(body string) bool { return len(Commands(body)) > 0 }
