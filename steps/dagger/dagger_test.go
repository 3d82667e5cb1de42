package dagger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-ci/sluice/dsl/plan"
	"github.com/sluice-ci/sluice/steps"
	"github.com/sluice-ci/sluice/steps/dagger/daggertest"
)

// workspace is a stage's workspace holding the greeter module in ci/ and
// two files in src/.
func workspace(t *testing.T) string {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"ci/dagger.json": `{"name": "greeter", "sdk": {"source": "go"}}`,
		"src/a.go":       "package a\n",
		"src/b.go":       "package a\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func daggerRequest(ws, module, function string, args map[string]string) (steps.Request, *bytes.Buffer) {
	cfg := &plan.DaggerStep{Module: plan.Lit(module), Function: function}
	for k, v := range args {
		if cfg.Args == nil {
			cfg.Args = map[string]plan.Template{}
		}
		cfg.Args[k] = plan.Lit(v)
	}
	var log bytes.Buffer
	return steps.Request{
		RunID: "run-1", StageID: "smoke",
		Step:      plan.Step{Name: "smoke", Kind: plan.KindDagger, Dagger: cfg},
		Workspace: ws, Log: &log,
	}, &log
}

func TestCall(t *testing.T) {
	tests := []struct {
		name, module, function string
		args                   map[string]string
		output                 string
		log                    []string
	}{
		{
			name: "local module, string result", module: "./ci", function: "hello",
			args:   map[string]string{"name": "world"},
			output: "Hello, world!",
			log:    []string{"dagger: connecting to the Dagger engine session at 127.0.0.1:", "dagger: loading module ./ci", `dagger: calling greeter.hello(name: "world")`, `dagger: hello returned "Hello, world!"`},
		},
		{
			name: "git module, typed arguments", module: daggertest.GreeterAddress, function: "hello",
			args:   map[string]string{"name": "sluice", "times": "2", "shout": "true", "greeting": "hi"},
			output: "HI, SLUICE!HI, SLUICE!",
		},
		{
			name: "module path without ./", module: "ci", function: "Hello",
			args:   map[string]string{"name": "x"},
			output: "Hello, x!",
		},
		{
			name: "kebab-case names and a directory argument", module: "./ci", function: "count-files",
			args:   map[string]string{"dir": "src"},
			output: "2",
		},
		{
			name: "float", module: "./ci", function: "ratio",
			args:   map[string]string{"of": "2"},
			output: "0.5",
		},
		{
			name: "object result is evaluated", module: "./ci", function: "build",
			output: "",
			log:    []string{"dagger: build returned a Container, evaluated; it has no output value"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := daggertest.New(t)
			req, log := daggerRequest(workspace(t), tt.module, tt.function, tt.args)
			res, err := Executor{}.Execute(context.Background(), req)
			if err != nil {
				t.Fatalf("Execute: %v\nlog:\n%s", err, log)
			}
			if got := res.Outputs["output"]; got != tt.output || len(res.Outputs) != 1 {
				t.Errorf("outputs = %q, want output %q", res.Outputs, tt.output)
			}
			for _, want := range tt.log {
				if !strings.Contains(log.String(), want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			q := f.Queries()
			if i := slices.IndexFunc(q, func(s string) bool { return strings.Contains(s, "serve") }); i < 0 || i == len(q)-1 {
				t.Errorf("the module was not served before the call; queries:\n%s", strings.Join(q, "\n"))
			}
		})
	}
}

func TestCallFails(t *testing.T) {
	tests := []struct {
		name, module, function string
		args                   map[string]string
		want                   []string
	}{
		{
			name: "unknown function", module: "./ci", function: "helo",
			want: []string{`Dagger module "./ci" (greeter) has no function "helo"; its functions are build, countFiles, fail, hello, ratio`},
		},
		{
			name: "unknown argument", module: "./ci", function: "hello",
			args: map[string]string{"nme": "x"},
			want: []string{`function "hello" takes no argument "nme"; its arguments are name (String, required), greeting (String), times (Int), shout (Boolean)`},
		},
		{
			name: "missing argument", module: "./ci", function: "hello",
			want: []string{`function "hello" needs the argument(s) name (String, required); add them to args`},
		},
		{
			name: "wrong type", module: "./ci", function: "hello",
			args: map[string]string{"name": "x", "times": "many"},
			want: []string{`argument "times" of function "hello": "many" is not an Int; give a whole number`},
		},
		{
			name: "directory outside the workspace", module: "./ci", function: "countFiles",
			args: map[string]string{"dir": "../etc"},
			want: []string{`"../etc" must be a path inside the workspace`},
		},
		{
			name: "function error", module: "./ci", function: "fail",
			args: map[string]string{"message": "no greeting today"},
			want: []string{`function greeter.fail failed: call function "fail": process "/runtime" did not complete successfully: exit code: 2`, "greeter: no greeting today"},
		},
		{
			name: "module directory missing", module: "./nope", function: "hello",
			want: []string{`Dagger module "./nope" not found: the workspace has no directory ./nope`},
		},
		{
			name: "directory is no module", module: "src", function: "hello",
			want: []string{`loading Dagger module "src": failed to resolve module source`, "no dagger.json found", "Check module:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := daggertest.New(t)
			req, log := daggerRequest(workspace(t), tt.module, tt.function, tt.args)
			_, err := Executor{}.Execute(context.Background(), req)
			if err == nil {
				t.Fatalf("Execute succeeded; log:\n%s", log)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if tt.function != "fail" {
				for _, q := range f.Queries() {
					if strings.Contains(q, "query Call") {
						t.Errorf("the function was called although the step is wrong: %s", q)
					}
				}
			}
		})
	}
}

// noEngine leaves the process without any way to an engine.
func noEngine(t *testing.T) {
	for _, k := range []string{EnvSessionPort, EnvSessionToken, EnvCLI} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("PATH", t.TempDir())
}

func TestNoEngine(t *testing.T) {
	noEngine(t)
	req, log := daggerRequest(workspace(t), "./ci", "hello", map[string]string{"name": "x"})
	_, err := Executor{}.Execute(context.Background(), req)
	if !errors.Is(err, ErrNoEngine) {
		t.Fatalf("err = %v, want ErrNoEngine", err)
	}
	for _, w := range []string{"reaches no Dagger engine", "dagger run", "DAGGER_SESSION_PORT", "dagger CLI on its PATH"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if log.Len() != 0 {
		t.Errorf("log = %q; nothing was run", log)
	}
}

func TestDetect(t *testing.T) {
	cliDir := t.TempDir()
	cli := filepath.Join(cliDir, "dagger")
	if err := os.WriteFile(cli, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    Engine
		wantErr string
	}{
		{name: "session", env: map[string]string{EnvSessionPort: "4321", EnvSessionToken: "t"}, want: Engine{Session: "127.0.0.1:4321"}},
		{name: "session without token", env: map[string]string{EnvSessionPort: "4321"}, wantErr: "DAGGER_SESSION_PORT is set but DAGGER_SESSION_TOKEN is not"},
		{name: "bad port", env: map[string]string{EnvSessionPort: "http://x", EnvSessionToken: "t"}, wantErr: `DAGGER_SESSION_PORT="http://x" is not a port number`},
		{name: "CLI named", env: map[string]string{EnvCLI: cli}, want: Engine{CLI: cli}},
		{name: "CLI named but missing", env: map[string]string{EnvCLI: filepath.Join(cliDir, "nope")}, wantErr: "names no dagger CLI that can be run"},
		{name: "CLI on PATH", env: map[string]string{"PATH": cliDir}, want: Engine{CLI: cli}},
		{name: "nothing", wantErr: ErrNoEngine.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			noEngine(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := Detect()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Detect() = %v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Detect() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// TestFakeIsStrict checks that the fake refuses what the engine refuses:
// a query outside Dagger's schema, a call to a module not served yet, and
// a request without the session token.
func TestFakeIsStrict(t *testing.T) {
	f := daggertest.New(t)
	var reports []string
	f.Report = func(format string, args ...any) { reports = append(reports, fmt.Sprintf(format, args...)) }
	port := f.Port
	post := func(token, query string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:"+port+"/query", strings.NewReader(fmt.Sprintf(`{"query": %q}`, query)))
		if token != "" {
			req.SetBasicAuth(token, "")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct{ token, query, want string }{
		{f.Token, `{ moduleSource(ref: "x") { asModule { name } } }`, `Unknown argument "ref"`},
		{f.Token, `{ greeter { hello(name: "x") } }`, `Cannot query field "greeter" on type "Query"`},
		{f.Token, `{ host { directory(path: 3) { id } } }`, "String cannot represent a non string value"},
		{"wrong", `{ version }`, "without the session token"},
	} {
		reports = nil
		post(c.token, c.query)
		if len(reports) != 1 || !strings.Contains(reports[0], c.want) {
			t.Errorf("query %s: reports = %q, want one with %q", c.query, reports, c.want)
		}
	}
}

// TestSchemaIsPublished checks that the fake holds Dagger's published
// schema unchanged.
func TestSchemaIsPublished(t *testing.T) {
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/dagger/dagger@v0.21.8").Output()
	if err != nil {
		t.Fatalf("go mod download github.com/dagger/dagger@v0.21.8: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download printed %s: %v", out, err)
	}
	published, err := os.ReadFile(filepath.Join(mod.Dir, "docs/docs-graphql/schema.graphqls"))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(filepath.Join("daggertest", daggertest.CoreSchemaFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(published, ours) {
		t.Errorf("daggertest/dagger-v0.21.8.graphqls differs from the schema published in github.com/dagger/dagger@v0.21.8")
	}
}
