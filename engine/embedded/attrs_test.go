package embedded

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

// TestStartAddsMissingSearchAttributes: a database whose namespace was
// registered without Sluice's search attributes, or with only some (made
// by an older sluice), gets the missing ones at Start. A database made for
// the start gets them with the namespace, and Start does not ask for them
// (TestRunPersistRestart runs and lists workflows by them on a new one).
func TestStartAddsMissingSearchAttributes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "temporal.db")
	if err := copyEmptyDatabase(path); err != nil {
		t.Fatal(err)
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, DefaultNamespace, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqliteschema.CreateNamespaces(sqliteConfig(path), ns); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	c, err := client.DialContext(ctx, client.Options{HostPort: srv.Address(), Namespace: srv.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: srv.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, a := range searchAttrs {
		if _, ok := have.GetCustomAttributes()[a]; !ok {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		t.Errorf("after Start on a namespace registered without them, search attributes %v are missing", missing)
	}
}
