// Package release runs release steps: it creates a git tag at the run's
// commit through GitHub's REST API and a GitHub release for it, with
// notes GitHub generates or notes the step gives, on github.com or a
// GitHub Enterprise Server, as a token or as a GitHub App installation.
//
// Every call is safe to repeat. The step first reads what exists: a tag
// already at the commit is kept, a tag at another commit fails the step
// before any release is made, and a release already made for the tag (a
// draft included) is returned instead of a second one. An attempt whose
// response was lost after GitHub acted, such as a timeout, is therefore
// finished by the next attempt, in the same step or in a retried one.
package release
