package engine

import (
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/server/temporaltest"
)

func TestProbe(t *testing.T) {
	s := temporaltest.NewServer(temporaltest.WithT(t))
	_ = s
	var _ client.Client
}
