package buildkit

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// buildkitd's own request to a registry that does not answer is not a lost
// connection to buildkitd: the user is sent to the registry, and the
// executor keeps its connection.
func TestRegistryRefusedIsNotLost(t *testing.T) {
	err := errors.New(`failed to solve: 127.0.0.1:40887/busybox:local: failed to resolve source metadata for 127.0.0.1:40887/busybox:local: failed to do request: Head "http://127.0.0.1:40887/v2/busybox/manifests/local": dial tcp 127.0.0.1:40887: connect: connection refused`)
	if Lost(err) {
		t.Error("Lost: a registry that refused buildkitd's connection taken for buildkitd gone")
	}
	msg := Describe(context.Background(), err, "unix:///run/buildkitd.sock", "building image app").Error()
	for _, want := range []string{"building image app", "127.0.0.1:40887/busybox:local", "nothing answers at 127.0.0.1:40887", "start that registry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}

	for _, lost := range []string{
		"rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix /run/buildkitd.sock: connect: connection refused\"",
		"error reading from server: EOF",
	} {
		if !Lost(errors.New(lost)) {
			t.Errorf("Lost(%q) = false", lost)
		}
	}
}
