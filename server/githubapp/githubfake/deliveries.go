package githubfake

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The App's webhook as GitHub runs it: Send delivers an event to the
// webhook URL, signed with the secret, and records the attempt; the App
// lists its attempts (GET /app/hook/deliveries) and asks for one again
// (POST /app/hook/deliveries/{id}/attempts), which sends the same GUID and
// body again. GitHub retries nothing by itself, and neither does the fake.

// Delivery is one attempt to deliver an event to the App's webhook.
type Delivery struct {
	ID          int64
	GUID        string
	Event       string
	Action      string
	StatusCode  int
	Status      string
	DeliveredAt time.Time
	Redelivery  bool
	body        []byte
}

// SetWebhook sets where the App's events go and the secret that signs
// them.
func (s *Server) SetWebhook(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hookURL, s.hookSecret = url, secret
}

// Send delivers an event (its X-GitHub-Event name, GUID and JSON body) to
// the webhook, as GitHub does once, and returns the recorded attempt. An
// unreachable webhook is recorded as GitHub records it: status code 502,
// "failed to connect".
func (s *Server) Send(event, guid string, body []byte) Delivery {
	return s.send(event, guid, body, false)
}

func (s *Server) send(event, guid string, body []byte, again bool) Delivery {
	s.mu.Lock()
	hookURL, secret := s.hookURL, s.hookSecret
	s.nextID++
	id := s.nextID
	s.mu.Unlock()
	var payload struct {
		Action string `json:"action"`
	}
	_ = json.Unmarshal(body, &payload)
	d := Delivery{ID: id, GUID: guid, Event: event, Action: payload.Action, DeliveredAt: time.Now().UTC().Truncate(time.Second), Redelivery: again, body: body}
	req, err := http.NewRequest(http.MethodPost, hookURL, bytes.NewReader(body))
	if err == nil {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "GitHub-Hookshot/fake")
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", guid)
		req.Header.Set("X-GitHub-Hook-ID", "1")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		var resp *http.Response
		if resp, err = (&http.Client{Timeout: 10 * time.Second}).Do(req); err == nil {
			d.StatusCode = resp.StatusCode
			d.Status = strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)))
			resp.Body.Close()
		}
	}
	if err != nil {
		d.StatusCode, d.Status = http.StatusBadGateway, "failed to connect"
	}
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	return d
}

// Deliveries returns the attempts so far, oldest first.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Delivery(nil), s.deliveries...)
}

// appOp answers the operations an App makes as itself, with its JWT; ok
// is false for the others.
func (s *Server) appOp(op string, r *http.Request, p map[string]string, q url.Values) (res response, ok bool) {
	switch op {
	case "apps/list-webhook-deliveries", "apps/redeliver-webhook-delivery":
	default:
		return response{}, false
	}
	bearer, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found {
		return errorResponse(http.StatusUnauthorized, "A JSON web token could not be decoded"), true
	}
	if err := s.verifyJWT(bearer, time.Now()); err != nil {
		return errorResponse(http.StatusUnauthorized, err.Error()), true
	}
	if op == "apps/list-webhook-deliveries" {
		return s.listDeliveries(r, q), true
	}
	id, _ := strconv.ParseInt(p["delivery_id"], 10, 64)
	s.mu.Lock()
	var hit *Delivery
	for i := range s.deliveries {
		if s.deliveries[i].ID == id {
			d := s.deliveries[i]
			hit = &d
		}
	}
	s.mu.Unlock()
	if hit == nil {
		return errorResponse(http.StatusNotFound, "Not Found"), true
	}
	d := *hit
	// GitHub queues the attempt and answers at once.
	go s.send(d.Event, d.GUID, d.body, true)
	return response{status: http.StatusAccepted, body: map[string]any{}}, true
}

// listDeliveries pages the attempts newest first; the cursor is the ID of
// the first attempt of the next page.
func (s *Server) listDeliveries(r *http.Request, q url.Values) response {
	per := 30
	if v := q.Get("per_page"); v != "" {
		per, _ = strconv.Atoi(v)
		per = min(max(per, 1), 100)
	}
	s.mu.Lock()
	all := make([]Delivery, 0, len(s.deliveries))
	for i := len(s.deliveries) - 1; i >= 0; i-- {
		all = append(all, s.deliveries[i])
	}
	s.mu.Unlock()
	start := 0
	if c := q.Get("cursor"); c != "" {
		id, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			return errorResponse(http.StatusBadRequest, "invalid cursor")
		}
		for start < len(all) && all[start].ID != id {
			start++
		}
	}
	end := min(start+per, len(all))
	items := []map[string]any{}
	for _, d := range all[start:end] {
		var action any = d.Action
		if d.Action == "" {
			action = nil
		}
		items = append(items, map[string]any{
			"id": d.ID, "guid": d.GUID, "delivered_at": d.DeliveredAt.Format(time.RFC3339), "redelivery": d.Redelivery,
			"duration": 0.01, "status": d.Status, "status_code": d.StatusCode, "event": d.Event, "action": action,
			"installation_id": nil, "repository_id": nil,
		})
	}
	h := http.Header{}
	if end < len(all) {
		next := fmt.Sprintf("%s%s?per_page=%d&cursor=%d", s.srv.URL, r.URL.Path, per, all[end].ID)
		h.Set("Link", fmt.Sprintf(`<%s>; rel="next"`, next))
	}
	return response{status: http.StatusOK, header: h, body: items}
}
