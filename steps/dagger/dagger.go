package dagger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	sdk "dagger.io/dagger"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/sluice-ci/sluice/steps"
)

// Executor runs dagger steps. It connects to the engine Detect finds at
// each step, so a runner picks up an engine that was started after it.
type Executor struct{}

// Execute loads the step's module, checks the function and its arguments
// against what the module declares, and calls it. A function that returns
// a scalar passes its value on as the output `output`; one that returns an
// object (a Container, a Directory, ...) is evaluated and has an empty
// output.
func (Executor) Execute(ctx context.Context, req steps.Request) (steps.Result, error) {
	cfg := req.Step.Dagger
	if cfg == nil {
		return steps.Result{}, fmt.Errorf("step %q has no dagger configuration", req.Step.Name)
	}
	eng, err := Detect()
	if err != nil {
		return steps.Result{}, err
	}
	if err := useCLI(eng); err != nil {
		return steps.Result{}, fmt.Errorf("pointing the Dagger SDK at %s: %w", eng.CLI, err)
	}
	ref, err := moduleRef(req.Workspace, cfg.Module.Literal())
	if err != nil {
		return steps.Result{}, err
	}
	fmt.Fprintf(req.Log, "dagger: connecting to %s\n", eng)
	client, err := sdk.Connect(ctx, sdk.WithLogOutput(req.Log))
	if err != nil {
		return steps.Result{}, fmt.Errorf("connecting to %s: %w", eng, err)
	}
	defer client.Close()

	fmt.Fprintf(req.Log, "dagger: loading module %s\n", cfg.Module.Literal())
	var md moduleData
	if err := do(ctx, client, moduleQuery, map[string]any{"ref": ref}, &md); err != nil {
		return steps.Result{}, fmt.Errorf("loading Dagger module %q: %s. Check module: a path in the repository holding dagger.json, or a git address like github.com/acme/ci@v1.2.0", cfg.Module.Literal(), describe(err))
	}
	mod := &md.ModuleSource.AsModule
	main, ok := mod.mainObject()
	if !ok {
		return steps.Result{}, fmt.Errorf("Dagger module %q (%s) has no main object named like the module, so it has no functions to call", cfg.Module.Literal(), mod.Name)
	}
	fn, ok := main.function(cfg.Function)
	if !ok {
		return steps.Result{}, fmt.Errorf("Dagger module %q (%s) has no function %q; %s", cfg.Module.Literal(), mod.Name, cfg.Function, main.functionNames())
	}
	if main.Constructor != nil {
		for i := range main.Constructor.Args {
			if a := &main.Constructor.Args[i]; a.required() {
				return steps.Result{}, fmt.Errorf("the constructor of Dagger module %q needs the argument %s, and a dagger step passes arguments only to the function; give it a default in the module", mod.Name, a.describe())
			}
		}
	}
	values := map[string]string{}
	for k, v := range cfg.Args {
		values[k] = v.Literal()
	}
	b, err := fn.bind(values, req.Workspace)
	if err != nil {
		return steps.Result{}, fmt.Errorf("calling %s.%s: %w", mod.Name, fn.Name, err)
	}
	for _, h := range b.host {
		var id sdk.ID
		if h.dir {
			d, derr := client.Host().Directory(h.path).ID(ctx)
			id, err = sdk.ID(d), derr
		} else {
			f, ferr := client.Host().File(h.path).ID(ctx)
			id, err = sdk.ID(f), ferr
		}
		if err != nil {
			return steps.Result{}, fmt.Errorf("loading %s into the Dagger engine: %s", h.path, describe(err))
		}
		b.vars[h.variable] = id
	}

	// Serving the module adds its functions to the session's schema.
	if err := client.ModuleSource(ref).AsModule().Serve(ctx); err != nil {
		return steps.Result{}, fmt.Errorf("serving Dagger module %q: %s", cfg.Module.Literal(), describe(err))
	}
	fmt.Fprintf(req.Log, "dagger: calling %s.%s%s\n", mod.Name, fn.Name, callArgs(values))
	var data map[string]map[string]json.RawMessage
	if err := do(ctx, client, callQuery(mod, fn, b), b.vars, &data); err != nil {
		if ctx.Err() != nil {
			return steps.Result{}, ctx.Err()
		}
		return steps.Result{}, fmt.Errorf("function %s.%s failed: %s", mod.Name, fn.Name, describe(err))
	}
	raw := data[fieldName(mod.Name)][fieldName(fn.Name)]
	out := ""
	if _, scalar := selection(fn.ReturnType); scalar {
		out = outputText(raw)
		fmt.Fprintf(req.Log, "dagger: %s returned %s\n", fn.Name, strings.TrimSpace(string(raw)))
	} else {
		fmt.Fprintf(req.Log, "dagger: %s returned a %s, evaluated; it has no output value\n", fn.Name, fn.ReturnType.display())
	}
	return steps.Result{Outputs: map[string]string{"output": out}}, nil
}

// do sends one GraphQL request.
func do(ctx context.Context, c *sdk.Client, query string, vars map[string]any, data any) error {
	resp := &sdk.Response{Data: data}
	if err := c.Do(ctx, &sdk.Request{Query: query, Variables: vars}, resp); err != nil {
		return err
	}
	if len(resp.Errors) > 0 {
		return resp.Errors
	}
	return nil
}

// describe turns an engine error into its message; an exec error carries
// the output of the command that failed.
func describe(err error) string {
	var exec *sdk.ExecError
	if errors.As(err, &exec) {
		msg := exec.Message()
		if s := strings.TrimSpace(exec.Stderr); s != "" {
			msg += "\n" + s
		}
		return msg
	}
	var gqlErr *gqlerror.Error
	if errors.As(err, &gqlErr) {
		return gqlErr.Message
	}
	return err.Error()
}

// moduleRef resolves the module attribute: a path in the workspace when it
// is one (".", "./ci", "ci/dagger"), otherwise a git address passed to the
// engine as it is.
func moduleRef(workspace, module string) (string, error) {
	if module == "" {
		return "", errors.New("module is empty; give a path in the repository holding dagger.json, or a git address like github.com/acme/ci@v1.2.0")
	}
	local := module == "." || strings.HasPrefix(module, "./") || strings.HasPrefix(module, "../") || filepath.IsAbs(module)
	if first, _, _ := strings.Cut(module, "/"); !local && (strings.Contains(first, ".") || strings.Contains(module, "@") || strings.Contains(module, "://")) {
		return module, nil // a host name first: a git address
	}
	p, err := workspacePath(workspace, module)
	if err != nil {
		return "", fmt.Errorf("module %w", err)
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("Dagger module %q not found: the workspace has no directory %s. Give a path in the repository holding dagger.json, or a git address like github.com/acme/ci@v1.2.0", module, module)
	}
	return p, nil
}

// callArgs renders the arguments for the log; secret values in them are
// masked by the log writer.
func callArgs(values map[string]string) string {
	if len(values) == 0 {
		return "()"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(values)) {
		parts = append(parts, fmt.Sprintf("%s: %q", k, values[k]))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

var _ steps.Executor = Executor{}
