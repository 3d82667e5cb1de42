package engine

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
)

// Setup registers a namespace that does not exist, with its retention and
// Sluice's search attributes; run again, it finds everything there and
// changes nothing.
func TestSetupIsIdempotent(t *testing.T) {
	c := testClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := "sluice-setup-" + time.Now().Format("150405.000000")
	res, err := Setup(ctx, c, ns, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !res.CreatedNamespace || res.Retention != 72*time.Hour || !slices.Equal(res.AddedAttributes, SearchAttributes) {
		t.Fatalf("first setup: %+v, want the namespace created with 72h and every search attribute %v added", res, SearchAttributes)
	}
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range SearchAttributes {
		if _, ok := have.GetCustomAttributes()[name]; !ok {
			t.Errorf("namespace %s has no search attribute %s after setup", ns, name)
		}
	}
	again, err := Setup(ctx, c, ns, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if again.CreatedNamespace || again.Retention != 72*time.Hour || len(again.AddedAttributes) != 0 {
		t.Errorf("second setup: %+v, want nothing created or added and the retention kept at 72h", again)
	}
}
