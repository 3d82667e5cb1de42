package dsl

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// maxReadFile bounds what file() reads into an expression.
const maxReadFile = 1 << 20

// functions returns the functions of the expression language. Every one is
// deterministic: the same pipeline and event always compile to the same
// plan. file() reads only below root.
func functions(root string, changed []string, changedKnown bool) map[string]function.Function {
	return map[string]function.Function{
		"abs":             stdlib.AbsoluteFunc,
		"base64decode":    base64DecodeFunc,
		"base64encode":    base64EncodeFunc,
		"can":             tryfunc.CanFunc,
		"ceil":            stdlib.CeilFunc,
		"changed":         changedFunc(changed, changedKnown),
		"chomp":           stdlib.ChompFunc,
		"chunklist":       stdlib.ChunklistFunc,
		"coalesce":        stdlib.CoalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"csvdecode":       stdlib.CSVDecodeFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"endswith":        endsWithFunc,
		"file":            fileFunc(root),
		"fileexists":      fileExistsFunc(root),
		"flatten":         stdlib.FlattenFunc,
		"floor":           stdlib.FloorFunc,
		"format":          guardFormat(stdlib.FormatFunc),
		"formatdate":      stdlib.FormatDateFunc,
		"formatlist":      guardFormat(stdlib.FormatListFunc),
		"indent":          guardIndent(stdlib.IndentFunc),
		"index":           stdlib.IndexFunc,
		"join":            stdlib.JoinFunc,
		"jsondecode":      stdlib.JSONDecodeFunc,
		"jsonencode":      stdlib.JSONEncodeFunc,
		"keys":            stdlib.KeysFunc,
		"length":          stdlib.LengthFunc,
		"log":             stdlib.LogFunc,
		"lookup":          stdlib.LookupFunc,
		"lower":           stdlib.LowerFunc,
		"max":             stdlib.MaxFunc,
		"merge":           stdlib.MergeFunc,
		"min":             stdlib.MinFunc,
		"parseint":        stdlib.ParseIntFunc,
		"pow":             stdlib.PowFunc,
		"range":           stdlib.RangeFunc,
		"regex":           stdlib.RegexFunc,
		"regexall":        stdlib.RegexAllFunc,
		"regex_replace":   stdlib.RegexReplaceFunc,
		"replace":         stdlib.ReplaceFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setproduct":      guardProduct(stdlib.SetProductFunc),
		"setsubtract":     stdlib.SetSubtractFunc,
		"setunion":        stdlib.SetUnionFunc,
		"sha256":          sha256Func,
		"signum":          stdlib.SignumFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"split":           stdlib.SplitFunc,
		"startswith":      startsWithFunc,
		"strlen":          stdlib.StrlenFunc,
		"strrev":          stdlib.ReverseFunc,
		"substr":          stdlib.SubstrFunc,
		"timeadd":         stdlib.TimeAddFunc,
		"title":           stdlib.TitleFunc,
		"tobool":          stdlib.MakeToFunc(cty.Bool),
		"tolist":          stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":           stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":        stdlib.MakeToFunc(cty.Number),
		"toset":           stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring":        stdlib.MakeToFunc(cty.String),
		"trim":            stdlib.TrimFunc,
		"trimprefix":      stdlib.TrimPrefixFunc,
		"trimspace":       stdlib.TrimSpaceFunc,
		"trimsuffix":      stdlib.TrimSuffixFunc,
		"try":             tryfunc.TryFunc,
		"upper":           stdlib.UpperFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,
	}
}

// FunctionNames lists the functions of the expression language, sorted.
func FunctionNames() []string {
	var names []string
	for n := range functions("", nil, false) {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func stringPredicate(f func(s, affix string) bool) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "affix", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(f(args[0].AsString(), args[1].AsString())), nil
		},
	})
}

var (
	startsWithFunc = stringPredicate(strings.HasPrefix)
	endsWithFunc   = stringPredicate(strings.HasSuffix)
)

func stringFunc(f func(string) (string, error)) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "str", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			s, err := f(args[0].AsString())
			if err != nil {
				return cty.UnknownVal(cty.String), err
			}
			return cty.StringVal(s), nil
		},
	})
}

var (
	base64EncodeFunc = stringFunc(func(s string) (string, error) {
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	})
	base64DecodeFunc = stringFunc(func(s string) (string, error) {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return "", fmt.Errorf("the string is not valid base64: %w", err)
		}
		if !utf8.Valid(b) {
			return "", fmt.Errorf("the decoded bytes are not UTF-8 text")
		}
		return string(b), nil
	})
	sha256Func = stringFunc(func(s string) (string, error) {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:]), nil
	})
)

// changedFunc reports whether any file changed by the event matches one of
// the glob patterns. When the changed files are not known (no base to
// compare with), every pattern counts as matched, so nothing is skipped by
// mistake.
func changedFunc(changed []string, known bool) function.Function {
	return function.New(&function.Spec{
		VarParam: &function.Parameter{Name: "patterns", Type: cty.String},
		Type:     function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if len(args) == 0 {
				return cty.False, fmt.Errorf("changed needs at least one glob pattern, like changed(\"services/api/**\")")
			}
			if !known {
				return cty.True, nil
			}
			for _, a := range args {
				for _, f := range changed {
					if matchGlob(a.AsString(), f) {
						return cty.True, nil
					}
				}
			}
			return cty.False, nil
		},
	})
}

// insideRoot resolves a relative path below root, refusing paths that
// escape it, through ".." or through symbolic links: pipelines are read
// from repositories that may not be trusted.
func insideRoot(root, name string) (string, error) {
	if filepath.IsAbs(name) {
		return "", fmt.Errorf("the path %q is absolute; give a path relative to the repository", name)
	}
	if !within(root, filepath.Join(root, name)) {
		return "", fmt.Errorf("the path %q is outside the repository", name)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", fmt.Errorf("resolving the repository directory: %w", err)
	}
	p, err := filepath.EvalSymlinks(filepath.Join(realRoot, name))
	if err != nil {
		return "", fmt.Errorf("reading %q: %w", name, err)
	}
	if !within(realRoot, p) {
		return "", fmt.Errorf("the path %q is outside the repository", name)
	}
	return p, nil
}

// within reports whether path p is root or below it.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func fileFunc(root string) function.Function {
	return stringFunc(func(name string) (string, error) {
		p, err := insideRoot(root, name)
		if err != nil {
			return "", err
		}
		f, err := os.Open(p)
		if err != nil {
			return "", fmt.Errorf("reading %q: %w", name, err)
		}
		defer f.Close()
		if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() {
			return "", fmt.Errorf("%q is not a regular file", name)
		}
		b, err := io.ReadAll(io.LimitReader(f, maxReadFile+1))
		if err != nil {
			return "", fmt.Errorf("reading %q: %w", name, err)
		}
		if len(b) > maxReadFile {
			return "", fmt.Errorf("the file %q is larger than the %d bytes file() reads", name, maxReadFile)
		}
		if !utf8.Valid(b) {
			return "", fmt.Errorf("the file %q is not UTF-8 text", name)
		}
		return string(b), nil
	})
}

func fileExistsFunc(root string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p, err := insideRoot(root, args[0].AsString())
			if errors.Is(err, fs.ErrNotExist) {
				return cty.False, nil
			}
			if err != nil {
				return cty.False, err
			}
			info, err := os.Stat(p)
			return cty.BoolVal(err == nil && info.Mode().IsRegular()), nil
		},
	})
}

// The guards below refuse arguments that would make a function allocate
// far more than any pipeline needs, before it allocates: pipelines come
// from repositories and pull requests, and compiling one must not take a
// server down. The limits are generous for real use.
const (
	maxFormatWidth = 10000
	maxIndent      = 1000
	maxProduct     = 10000
)

var formatWidthRE = regexp.MustCompile(`%[-+# 0]*(\d*)(?:\.(\d+))?`)

func guardFormat(f function.Function) function.Function {
	return wrapImpl(f, func(args []cty.Value) error {
		if len(args) == 0 || !args[0].IsKnown() || args[0].IsNull() || args[0].Type() != cty.String {
			return nil
		}
		for _, m := range formatWidthRE.FindAllStringSubmatch(args[0].AsString(), -1) {
			for _, n := range m[1:] {
				if w, err := strconv.Atoi(n); n != "" && (err != nil || w > maxFormatWidth) {
					return fmt.Errorf("a width or precision of %s is more than the %d format allows", n, maxFormatWidth)
				}
			}
		}
		return nil
	})
}

func guardIndent(f function.Function) function.Function {
	return wrapImpl(f, func(args []cty.Value) error {
		if len(args) > 0 && args[0].IsKnown() && !args[0].IsNull() && args[0].Type() == cty.Number {
			if n, _ := args[0].AsBigFloat().Int64(); n > maxIndent {
				return fmt.Errorf("indent takes at most %d spaces", maxIndent)
			}
		}
		return nil
	})
}

func guardProduct(f function.Function) function.Function {
	return wrapImpl(f, func(args []cty.Value) error {
		total := 1
		for _, a := range args {
			if !a.IsKnown() || a.IsNull() || !a.CanIterateElements() {
				return nil
			}
			total *= max(a.LengthInt(), 1)
			if total > maxProduct {
				return fmt.Errorf("the product has more than %d elements", maxProduct)
			}
		}
		return nil
	})
}

// wrapImpl returns f with check run on the arguments before f itself.
func wrapImpl(f function.Function, check func([]cty.Value) error) function.Function {
	spec := &function.Spec{
		Description: f.Description(),
		Params:      f.Params(),
		VarParam:    f.VarParam(),
		Type: func(args []cty.Value) (cty.Type, error) {
			return f.ReturnTypeForValues(args)
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if err := check(args); err != nil {
				return cty.DynamicVal, err
			}
			return f.Call(args)
		},
	}
	return function.New(spec)
}
