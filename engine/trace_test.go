package engine

import "testing"

// A run's trace ID never changes: run pages link traces exported by
// earlier versions, and a server exporting a run again must hit the same
// trace.
func TestTraceID(t *testing.T) {
	for _, tc := range []struct{ name, run, want string }{
		{"run", "web-1a2b3c4d5e6f", "ae401e2f161c1404fecc6e6fc341aa50"},
		{"another run", "web-1a2b3c4d5e6g", "7e204cdc6934222c101ffc68ca95ff90"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TraceID(tc.run); got != tc.want {
				t.Errorf("TraceID(%q) = %s, want %s", tc.run, got, tc.want)
			}
		})
	}
}
