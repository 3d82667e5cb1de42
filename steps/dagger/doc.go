// Package dagger runs `dagger` steps: it calls a function of a Dagger module
// through the Dagger Go SDK, on a runner that reaches a Dagger engine.
//
// A runner reaches an engine when it runs inside an engine session
// (DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN, as `dagger run` sets them)
// or has the dagger CLI (_EXPERIMENTAL_DAGGER_CLI_BIN, or `dagger` on PATH),
// which starts a session of its own; see Detect. The SDK's fallback of
// downloading a CLI is never used.
//
// No engine can run where Sluice is developed, so the tests run the
// executor against a fake engine session that validates every query the
// SDK sends against Dagger's published GraphQL schema.
package dagger
