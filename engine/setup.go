package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"
)

// SetupResult says what Setup found and did.
type SetupResult struct {
	// CreatedNamespace says the namespace was registered now.
	CreatedNamespace bool
	// Retention is the namespace's workflow retention.
	Retention time.Duration
	// AddedAttributes are the search attributes added now; the others
	// were there.
	AddedAttributes []string
}

// Setup makes a Temporal cluster ready for Sluice: the namespace exists
// (registered with retention when it does not) and has Sluice's search
// attributes. It changes nothing that is there already, so it can run on
// every deploy. It needs a cluster administrator's credentials, which
// servers and runners do not.
func Setup(ctx context.Context, c client.Client, namespace string, retention time.Duration) (SetupResult, error) {
	var res SetupResult
	desc, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var nf *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &nf):
		if _, err := c.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        namespace,
			Description:                      "Sluice's pipelines",
			WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		}); err != nil {
			var exists *serviceerror.NamespaceAlreadyExists
			if !errors.As(err, &exists) {
				return res, fmt.Errorf("registering namespace %q: %w", namespace, err)
			}
		} else {
			res.CreatedNamespace = true
		}
		res.Retention = retention
	case err != nil:
		return res, fmt.Errorf("looking for namespace %q: %w", namespace, err)
	default:
		res.Retention = desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration()
	}
	// A namespace registered now may take a moment to be known to every
	// frontend: its search attributes are retried briefly.
	for attempt := 0; ; attempt++ {
		added, err := addSearchAttributes(ctx, c, namespace)
		if err == nil {
			res.AddedAttributes = added
			return res, nil
		}
		if attempt >= 20 || ctx.Err() != nil {
			return res, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
