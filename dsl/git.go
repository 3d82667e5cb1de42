package dsl

import (
	"sort"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/zclconf/go-cty/cty"
)

// gitFields maps the names of the git context to their values.
var gitFields = map[string]func(g plan.Git) cty.Value{
	"sha":           func(g plan.Git) cty.Value { return cty.StringVal(g.SHA) },
	"short_sha":     func(g plan.Git) cty.Value { return cty.StringVal(g.ShortSHA) },
	"branch":        func(g plan.Git) cty.Value { return cty.StringVal(g.Branch) },
	"tag":           func(g plan.Git) cty.Value { return cty.StringVal(g.Tag) },
	"ref":           func(g plan.Git) cty.Value { return cty.StringVal(g.Ref) },
	"event":         func(g plan.Git) cty.Value { return cty.StringVal(g.Event) },
	"repo":          func(g plan.Git) cty.Value { return cty.StringVal(g.Repo) },
	"actor":         func(g plan.Git) cty.Value { return cty.StringVal(g.Actor) },
	"pull_request":  func(g plan.Git) cty.Value { return cty.NumberIntVal(int64(g.PullRequest)) },
	"base_ref":      func(g plan.Git) cty.Value { return cty.StringVal(g.BaseRef) },
	"changed_files": changedFilesValue,
}

func changedFilesValue(g plan.Git) cty.Value {
	if len(g.ChangedFiles) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	vals := make([]cty.Value, len(g.ChangedFiles))
	for i, f := range g.ChangedFiles {
		vals[i] = cty.StringVal(f)
	}
	return cty.ListVal(vals)
}

// GitContextNames lists the attributes of the git.* context, sorted.
func GitContextNames() []string { return gitFieldNames() }

func gitFieldNames() []string {
	names := make([]string, 0, len(gitFields))
	for n := range gitFields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func gitValue(g plan.Git) cty.Value {
	vals := make(map[string]cty.Value, len(gitFields))
	for n, f := range gitFields {
		vals[n] = f(g)
	}
	return cty.ObjectVal(vals)
}
