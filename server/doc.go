// Package server is `sluice server`: the process a team runs so that pushes,
// pull requests, tags and schedules start runs by themselves.
//
// It receives GitHub App webhooks (POST /webhooks/github) and git
// post-receive hooks (POST /hooks/git), serves the JSON API (/api/v1), and
// hosts the Pipeline workflows, the Delivery workflow and, unless told not
// to, an in-process runner, on the embedded Temporal server or a cluster.
//
// Temporal is the queue. A delivery is verified on its raw body, then
// becomes a Delivery workflow whose ID derives from the delivery (GitHub's
// X-GitHub-Delivery; for git hooks the repository, ref and new commit), and
// only then is it answered 202. A redelivery finds that workflow and starts
// nothing; a server killed after the 202 finds the workflow when it comes
// back and finishes it. The workflow reads the pipeline files at the
// event's commit, compiles them with the event exactly as `sluice plan
// --event` does, and starts a run for each pipeline the event triggers,
// with a run ID derived from (repository, pipeline, event class, commit):
// a push and a pull request for the same commit, or two pull request events
// for one head, find the same run instead of starting two.
package server
