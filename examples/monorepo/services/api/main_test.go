package main

import (
	"testing"

	"example.com/monorepo/libs/shared"
)

func TestGreeting(t *testing.T) {
	if got := shared.Greeting("api"); got != "hello, api" {
		t.Errorf("Greeting = %q", got)
	}
}
