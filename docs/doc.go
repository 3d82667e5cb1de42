// Package docs holds Sluice's documentation; its test keeps the language
// reference (dsl.md) in step with the schema the compiler reads.
package docs
