package cli

import (
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sluice-ci/sluice/internal/testing/otlptest"
)

// receivers are the OTLP receivers of the scripts that started one.
var receivers sync.Map // *testscript.TestScript → *otlptest.Receiver

// otlpCmd is the scripts' OTLP receiver:
//
//	otlp start           receive traces; OTEL_EXPORTER_OTLP_ENDPOINT names the receiver
//	otlp wait NAME...    wait for spans so named, then print every span received
//	                     as "NAME parent=PARENT result=RESULT", and how many traces
func otlpCmd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: otlp start | otlp wait NAME...")
	}
	switch args[0] {
	case "start":
		r := &otlptest.Receiver{}
		srv := httptest.NewServer(r)
		ts.Defer(srv.Close)
		receivers.Store(ts, r)
		ts.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	case "wait":
		v, ok := receivers.Load(ts)
		if !ok {
			ts.Fatalf("otlp wait: no otlp start before")
		}
		r := v.(*otlptest.Receiver)
		var spans []otlptest.Span
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			spans = r.Spans()
			have := map[string]bool{}
			for _, s := range spans {
				have[s.GetName()] = true
			}
			missing := slices.DeleteFunc(slices.Clone(args[1:]), func(n string) bool { return have[n] })
			if len(missing) == 0 {
				break
			}
			if time.Now().After(deadline) {
				ts.Fatalf("no spans %q were received in a minute", missing)
			}
		}
		names := map[string]string{}
		traces := map[string]bool{}
		for _, s := range spans {
			names[hex.EncodeToString(s.GetSpanId())] = s.GetName()
			traces[hex.EncodeToString(s.GetTraceId())] = true
		}
		var lines []string
		for _, s := range spans {
			parent := "-"
			if len(s.GetParentSpanId()) > 0 {
				parent = names[hex.EncodeToString(s.GetParentSpanId())]
			}
			result := ""
			for _, kv := range s.GetAttributes() {
				if kv.GetKey() == "sluice.result" {
					result = kv.GetValue().GetStringValue()
				}
			}
			lines = append(lines, fmt.Sprintf("%s parent=%s result=%s\n", s.GetName(), parent, result))
		}
		slices.Sort(lines)
		fmt.Fprint(ts.Stdout(), strings.Join(lines, ""))
		fmt.Fprintf(ts.Stdout(), "%d trace(s)\n", len(traces))
	default:
		ts.Fatalf("otlp: unknown subcommand %q", args[0])
	}
}
