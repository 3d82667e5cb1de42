package githubapp

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/go-github/v62/github"
)

// GitHub does not deliver a webhook again by itself: a delivery the server
// did not take (it was down, or answered 5xx) is lost unless someone asks
// for it again, which GitHub allows for three days. These calls, made as
// the App (its JWT), let the server do that (server/redeliver.go).

// HookDelivery is one attempt GitHub made to deliver an event to the
// App's webhook; the attempts of one event share its GUID.
type HookDelivery struct {
	ID          int64
	GUID        string
	DeliveredAt time.Time
	Redelivery  bool
	StatusCode  int
	Status      string
	Event       string
	Action      string
}

// OK says whether the webhook took the delivery (a 2xx or 3xx, as GitHub
// counts success).
func (d HookDelivery) OK() bool { return d.StatusCode >= 200 && d.StatusCode < 400 }

// appClient is a go-github client authenticated as the App itself.
func (a *App) appClient() (*github.Client, error) {
	if err := a.init(); err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: a.apps}
	if a.HTTP != nil {
		hc.Timeout = a.HTTP.Timeout
	}
	gh := github.NewClient(hc)
	gh.BaseURL = a.base
	return gh, nil
}

// HookDeliveries lists the App's webhook deliveries, newest first, back to
// since or until limit of them.
func (a *App) HookDeliveries(ctx context.Context, since time.Time, limit int) ([]HookDelivery, error) {
	gh, err := a.appClient()
	if err != nil {
		return nil, err
	}
	var out []HookDelivery
	opts := &github.ListCursorOptions{PerPage: 100}
	for {
		page, resp, err := gh.Apps.ListHookDeliveries(ctx, opts)
		if err != nil {
			return out, classify(err, "listing the App's webhook deliveries")
		}
		for _, d := range page {
			hd := HookDelivery{
				ID: d.GetID(), GUID: d.GetGUID(), DeliveredAt: d.GetDeliveredAt().Time, Redelivery: d.GetRedelivery(),
				StatusCode: d.GetStatusCode(), Status: d.GetStatus(), Event: d.GetEvent(), Action: d.GetAction(),
			}
			if hd.DeliveredAt.Before(since) || len(out) >= limit {
				return out, nil
			}
			out = append(out, hd)
		}
		if resp.Cursor == "" || len(page) == 0 {
			return out, nil
		}
		opts.Cursor = resp.Cursor
	}
}

// Redeliver asks GitHub to deliver a delivery's event again, with the
// same GUID and body.
func (a *App) Redeliver(ctx context.Context, id int64) error {
	gh, err := a.appClient()
	if err != nil {
		return err
	}
	_, _, err = gh.Apps.RedeliverHookDelivery(ctx, id)
	if _, accepted := err.(*github.AcceptedError); accepted {
		err = nil // 202: GitHub queued the attempt
	}
	return classify(err, fmt.Sprintf("redelivering webhook delivery %d", id))
}
