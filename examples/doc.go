// Package examples holds the example pipelines, each in its own directory
// with a .sluice folder; its test checks that every one of them validates
// and plans.
package examples
