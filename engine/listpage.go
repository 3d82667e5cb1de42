package engine

import (
	"context"
	"fmt"
	"strings"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// RunPage is one page of a listing of runs (ListPage).
type RunPage struct {
	Runs []RunInfo `json:"runs"`
	// More says that a page follows this one.
	More bool `json:"more"`
	// Total counts every run the query matches.
	Total int64 `json:"total"`
}

// ListPage is List one page at a time, for a listing people page through
// (the web view's runs): page (from 1) of perPage runs, in visibility's
// order (running runs first, then the most recently ended). Only the pages
// up to the one asked for are read, never the whole history.
func ListPage(ctx context.Context, c client.Client, query string, page, perPage int) (RunPage, error) {
	if page < 1 || perPage < 1 {
		return RunPage{}, fmt.Errorf("listing runs: page %d of %d runs: both must be positive", page, perPage)
	}
	q := fmt.Sprintf("WorkflowType = '%s'", WorkflowName)
	if strings.TrimSpace(query) != "" {
		q += " AND (" + query + ")"
	}
	var out RunPage
	count, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: q})
	if err != nil {
		return RunPage{}, fmt.Errorf("counting runs (%s): %w", q, err)
	}
	out.Total = count.GetCount()
	var token []byte
	for i := 1; ; i++ {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: int32(perPage), NextPageToken: token})
		if err != nil {
			return RunPage{}, fmt.Errorf("listing runs (%s): %w", q, err)
		}
		token = resp.GetNextPageToken()
		if i == page {
			for _, e := range resp.GetExecutions() {
				out.Runs = append(out.Runs, runInfo(e))
			}
			out.More = len(token) > 0 && int64(page*perPage) < out.Total
			return out, nil
		}
		if len(token) == 0 {
			return out, nil
		}
	}
}
