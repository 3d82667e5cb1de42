// Package webhook receives GitHub App webhook deliveries for `sluice server`:
// it checks that a request really comes from GitHub (Verifier.Read) and
// turns the payload into one normalised Event (Parse) that the server acts
// on.
//
// Verification follows GitHub's contract and nothing looser:
//
//   - Only X-Hub-Signature-256 (HMAC-SHA256 of the raw body, keyed by the
//     webhook secret, hex encoded after "sha256=") is accepted. A request
//     signed only with the legacy SHA-1 X-Hub-Signature is refused: SHA-1
//     is kept by GitHub for old integrations, not for new receivers.
//   - The check is written here rather than taken from go-github's
//     ValidatePayload, which skips verification when the secret is empty
//     and falls back to SHA-1. An empty secret is refused when the Verifier
//     is built, so a misconfigured server fails to start instead of
//     accepting anyone's deliveries.
//   - Several secrets are accepted at once so that a secret can be rotated
//     without dropping deliveries; the answer never says which one matched.
//   - The body is read through http.MaxBytesReader capped at MaxBody
//     (25 MiB, the largest payload GitHub sends), so an unauthenticated
//     client cannot make the server buffer more than that.
//   - Only the body is signed. The X-GitHub-Event and X-GitHub-Delivery
//     headers are not, so anyone holding a captured delivery can replay it
//     with other header values; Parse reads every field from the signed
//     payload, and callers must treat the delivery ID as a hint for
//     deduplicating GitHub's own redeliveries (which reuse the GUID), not as
//     a guarantee against replay.
//
// Normalisation maps the events Sluice acts on to a Kind: branch pushes,
// tag pushes, pull requests being opened or updated, re-run requests from
// the Checks UI, check-run buttons, installation changes and pings.
// Everything else becomes KindIgnored with a reason, so that the server can
// answer 2xx (GitHub marks non-2xx deliveries as failed) and log why
// nothing ran.
//
// Pushing a tag makes GitHub send both a push event (ref refs/tags/NAME) and
// a create event (ref_type tag); creating a branch likewise sends push and
// create. Acting on both would start two runs for one change, so the push
// event is the one handled and the create event is ignored, with a reason
// that says so. Deletions (a push with deleted: true, or a delete event)
// are ignored too: there is nothing to build.
package webhook
