// Package dsl is Sluice's pipeline language: it reads the HCL files of a
// pipeline directory, checks them, and compiles them into a plan.Plan for
// one event.
//
// Decoding runs in phases, each on what the one before produced: the files
// are parsed; stages are declared and module blocks load their modules
// (local directories, or git repositories at the commits of the lock
// file), each module declared by a compiler of its own; variables get
// their values (defaults, SLUICE_VAR_*, var files, --var); locals and
// module calls are evaluated in dependency order, a call giving the
// module's variables their values and evaluating its locals and outputs;
// the evaluation context is built from git.*, var.*, local.*, module.* and
// pipeline.*; the needs of the pipeline's and the modules' stages are
// linked into one graph; then the pipeline, stages and steps are decoded,
// matrix instances expanded and `when` and triggers evaluated. Every user
// mistake is an hcl.Diagnostic with a source range; compilation goes on
// after an error so that one pass reports every problem it can.
package dsl
