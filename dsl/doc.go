// Package dsl is Sluice's pipeline language: it reads the HCL files of a
// pipeline directory, checks them, and compiles them into a plan.Plan for
// one event.
//
// Decoding runs in phases, each on what the one before produced: the files
// are parsed; variables get their values (defaults, SLUICE_VAR_*, var
// files, --var); locals are evaluated in dependency order; the evaluation
// context is built from git.*, var.*, local.* and pipeline.*; then the
// pipeline, stages and steps are decoded, matrix instances expanded and
// `when` and triggers evaluated. Every user mistake is an hcl.Diagnostic
// with a source range; compilation goes on after an error so that one pass
// reports every problem it can.
package dsl
