package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"

	"github.com/sluice-ci/sluice/server"
)

// TestRedeliveryReconciler: GitHub delivers each event once. Of five
// events, one the server took; one it never got (down: GitHub records 502
// "failed to connect"); one it refused (a bad signature, 401); one it
// answered 503 after Temporal took it all the same; and one it missed
// twice. A redelivery pass (POST /api/v1/deliveries/redeliver, as the
// hourly schedule does) asks GitHub again for exactly the two it never
// held, once each; they start their runs; a second pass asks for nothing.
func TestRedeliveryReconciler(t *testing.T) {
	e := start(t)
	hook := e.url + "/webhooks/github"
	e.gh.SetWebhook(hook, secret)
	base := e.commit("", map[string]string{".sluice/web.hcl": webPipeline})
	push := func(parent string) []byte {
		head := e.commit(parent, map[string]string{"src/" + parent[:6] + ".go": "package main"})
		return pushPayload(t, "refs/heads/main", parent, head, "change")
	}

	// Taken.
	if d := e.gh.Send("push", "g-taken", push(base)); d.StatusCode != http.StatusAccepted {
		t.Fatalf("the first delivery: %d %s", d.StatusCode, d.Status)
	}
	// The server is down.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String() + "/webhooks/github"
	ln.Close()
	e.gh.SetWebhook(dead, secret)
	if d := e.gh.Send("push", "g-lost", push(base)); d.StatusCode != http.StatusBadGateway {
		t.Fatalf("a delivery to a closed port was recorded as %d", d.StatusCode)
	}
	twice := push(base)
	e.gh.Send("push", "g-twice", twice)
	e.gh.Send("push", "g-twice", twice)
	// Signed with a secret the server does not know.
	e.gh.SetWebhook(hook, "not the secret")
	if d := e.gh.Send("push", "g-refused", push(base)); d.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a delivery with a wrong signature was recorded as %d", d.StatusCode)
	}
	// Held, though answered 503: a proxy that passes the delivery on and
	// then times out.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest(r.Method, hook, r.Body)
		req.Header = r.Header.Clone()
		if resp, err := http.DefaultClient.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		http.Error(w, "upstream timed out", http.StatusServiceUnavailable)
	}))
	defer proxy.Close()
	e.gh.SetWebhook(proxy.URL, secret)
	if d := e.gh.Send("push", "g-held", push(base)); d.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the proxied delivery was recorded as %d", d.StatusCode)
	}
	e.gh.SetWebhook(hook, secret) // the server is back
	e.result("g-held")            // Temporal has it

	tok := token(t, e.home, "alice")
	pass := func() server.RedeliverResult {
		t.Helper()
		resp, b := e.authed(http.MethodPost, "/api/v1/deliveries/redeliver", tok, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("redeliver: %d %s", resp.StatusCode, b)
		}
		var res server.RedeliverResult
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := pass()
	if res.Deliveries != 6 || res.Events != 5 || res.Failed != 4 || res.Refused != 1 || res.Held != 1 {
		t.Errorf("the pass found %+v, want 6 deliveries of 5 events, 4 failed: 1 refused, 1 held", res)
	}
	slices.Sort(res.Redelivered)
	if !slices.Equal(res.Redelivered, []string{"g-lost", "g-twice"}) {
		t.Fatalf("redelivered %q, want g-lost and g-twice", res.Redelivered)
	}

	// GitHub delivers them again, with their GUIDs: each starts its run.
	for _, guid := range []string{"g-lost", "g-twice"} {
		deadline := time.Now().Add(30 * time.Second)
		for !hasDelivery(e, guid) {
			if time.Now().After(deadline) {
				t.Fatalf("delivery %s was not taken after the redelivery", guid)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if r := e.result(guid); len(r.Runs) != 1 || r.Runs[0].Existing {
			t.Errorf("the redelivered %s started %+v, want one new run", guid, r.Runs)
		}
	}
	redelivered := 0
	for _, d := range e.gh.Deliveries() {
		if d.Redelivery {
			redelivered++
			if d.StatusCode != http.StatusAccepted {
				t.Errorf("the redelivery of %s was answered %d", d.GUID, d.StatusCode)
			}
		}
	}
	if redelivered != 2 {
		t.Errorf("GitHub made %d redeliveries, want 2", redelivered)
	}

	// Nothing is left to ask for.
	if again := pass(); len(again.Redelivered) != 0 || again.Failed != 2 {
		t.Errorf("the second pass: %+v, want nothing redelivered (2 failed: the refused and the held)", again)
	}

	// The server keeps the hourly schedule that makes the passes.
	desc, err := e.client.ScheduleClient().GetHandle(context.Background(), server.RedeliverScheduleID).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if iv := desc.Schedule.Spec.Intervals; len(iv) != 1 || iv[0].Every != time.Hour {
		t.Errorf("the redelivery schedule runs %+v, want every hour", iv)
	}
}

// hasDelivery says whether the server holds a Delivery workflow for guid.
func hasDelivery(e *env, guid string) bool {
	e.forwarded()
	_, err := e.client.DescribeWorkflowExecution(context.Background(), "github-"+guid, "")
	var nf *serviceerror.NotFound
	if err != nil && !errors.As(err, &nf) {
		e.t.Fatal(err)
	}
	return err == nil
}
