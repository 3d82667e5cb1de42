package run

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/sluice-ci/sluice/dsl/plan"
)

// outputName is what a name written to $SLUICE_OUTPUT must look like: an
// HCL identifier, since later steps refer to it as step.<name>.<output>.
var outputName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// declared returns the outputs a step declares, without the ones every run
// step produces. The run step's own list is authoritative; Step.Outputs is
// read too in case the compiler recorded declared outputs only there.
func declared(step plan.Step) []string {
	var names []string
	add := func(n string) {
		if !slices.Contains(plan.KindOutputs[plan.KindRun], n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if step.Run != nil {
		for _, n := range step.Run.Outputs {
			add(n)
		}
	}
	for _, n := range step.Outputs {
		add(n)
	}
	return names
}

// readOutputs reads the $SLUICE_OUTPUT file and returns every declared
// output, empty when the step did not write it. Names the step writes but
// does not declare are reported in the log, since a later step could not
// refer to them and the author most likely forgot to declare them.
func (e *Executor) readOutputs(path string, names []string, log io.Writer) (map[string]string, error) {
	limit := e.MaxOutputSize
	if limit <= 0 {
		limit = DefaultMaxOutputSize
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading $SLUICE_OUTPUT: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading $SLUICE_OUTPUT: %w", err)
	}
	return e.outputs(data, names, log)
}

// ParseOutputs reads the content of a $SLUICE_OUTPUT file written by the
// step, as the host executor does: executors that run steps elsewhere (in
// a container) read the file their own way and share the rules here.
func (e *Executor) ParseOutputs(data []byte, step plan.Step, log io.Writer) (map[string]string, error) {
	return e.outputs(data, declared(step), log)
}

func (e *Executor) outputs(data []byte, names []string, log io.Writer) (map[string]string, error) {
	limit := e.MaxOutputSize
	if limit <= 0 {
		limit = DefaultMaxOutputSize
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("$SLUICE_OUTPUT holds more than %d bytes; outputs are meant for short values, so write large data to a file in the workspace and output its path", limit)
	}
	written, order, err := parseOutputs(string(data))
	if err != nil {
		return nil, err
	}
	outputs := make(map[string]string, len(names))
	for _, n := range names {
		outputs[n] = written[n]
	}
	for _, n := range order {
		switch {
		case slices.Contains(names, n):
		case slices.Contains(plan.KindOutputs[plan.KindRun], n):
			fmt.Fprintf(log, "sluice: warning: the step wrote output %q to $SLUICE_OUTPUT, but sluice sets %s itself; the value written is ignored\n", n, n)
		case len(names) == 0:
			fmt.Fprintf(log, "sluice: warning: the step wrote output %q to $SLUICE_OUTPUT, but it declares no outputs, so later steps cannot use it; add outputs = [%q] to the step\n", n, n)
		default:
			fmt.Fprintf(log, "sluice: warning: the step wrote output %q to $SLUICE_OUTPUT, but it declares only %s, so later steps cannot use it; add %q to the step's outputs\n", n, quoteList(names), n)
		}
	}
	return outputs, nil
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// parseOutputs reads the lines of a $SLUICE_OUTPUT file: `name=value`, or
// `name<<DELIMITER`, the value's lines, then a line holding only
// DELIMITER. It returns the values (a name written twice keeps the last)
// and the names in the order first written. Windows line endings are
// accepted.
func parseOutputs(data string) (map[string]string, []string, error) {
	values := map[string]string{}
	var order []string
	set := func(name, value string) {
		if _, ok := values[name]; !ok {
			order = append(order, name)
		}
		values[name] = value
	}
	lines := strings.Split(data, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSuffix(lines[i], "\r")
		if line == "" {
			continue
		}
		eq := strings.IndexByte(line, '=')
		hd := strings.Index(line, "<<")
		if hd >= 0 && (eq < 0 || hd < eq) {
			name, delim := line[:hd], line[hd+2:]
			if err := checkName(name, i+1, line); err != nil {
				return nil, nil, err
			}
			if delim == "" {
				return nil, nil, fmt.Errorf("$SLUICE_OUTPUT line %d: %q names no delimiter after <<", i+1, line)
			}
			start := i + 1
			var body []string
			closed := false
			for i++; i < len(lines); i++ {
				l := strings.TrimSuffix(lines[i], "\r")
				if l == delim {
					closed = true
					break
				}
				body = append(body, l)
			}
			if !closed {
				return nil, nil, fmt.Errorf("$SLUICE_OUTPUT line %d: the value of %q is not ended by a line holding only %q", start, name, delim)
			}
			set(name, strings.Join(body, "\n"))
			continue
		}
		if eq < 0 {
			return nil, nil, fmt.Errorf("$SLUICE_OUTPUT line %d: %q is neither name=value nor name<<DELIMITER", i+1, line)
		}
		if err := checkName(line[:eq], i+1, line); err != nil {
			return nil, nil, err
		}
		set(line[:eq], line[eq+1:])
	}
	return values, order, nil
}

func checkName(name string, lineNo int, line string) error {
	if !outputName.MatchString(name) {
		return fmt.Errorf("$SLUICE_OUTPUT line %d: %q does not start with an output name (letters, digits, _ and -, with no spaces around =)", lineNo, line)
	}
	return nil
}
