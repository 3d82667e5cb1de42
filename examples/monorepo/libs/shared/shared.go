// Package shared holds code both services use.
package shared

// Greeting is what every service says first.
func Greeting(who string) string { return "hello, " + who }
