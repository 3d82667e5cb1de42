package dsl

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// generatePipeline writes a pipeline of n stages with five steps each, in
// ten files: every stage needs the one before and the one ten before it,
// uses variables, locals and the git context, and its steps refer to
// outputs of earlier steps.
func generatePipeline(tb testing.TB, n int) string {
	tb.Helper()
	dir := tb.TempDir()
	var files [10]strings.Builder
	files[0].WriteString(`pipeline "big" {
  on "push" { branches = ["main"] }
  concurrency { group = "big-${git.ref}" }
}
variable "registry" { default = "registry.example.com/big" }
secret "token" { env = "TOKEN" }
locals { tag = substr(git.sha, 0, 12) }
`)
	for i := 0; i < n; i++ {
		b := &files[i%10]
		fmt.Fprintf(b, "stage \"s%d\" {\n", i)
		switch {
		case i >= 10:
			fmt.Fprintf(b, "  needs = [stage.s%d, stage.s%d]\n", i-1, i-10)
		case i > 0:
			fmt.Fprintf(b, "  needs = [stage.s%d]\n", i-1)
		}
		fmt.Fprintf(b, "  timeout = \"30m\"\n  env = { STAGE = \"s%d\" }\n", i)
		fmt.Fprintf(b, "  step \"image\" \"img%d\" {\n    tags = [\"${var.registry}/s%d:${local.tag}\"]\n    build_args = { N = \"%d\" }\n  }\n", i, i, i)
		fmt.Fprintf(b, "  step \"run\" \"build%d\" {\n    command = [\"make\", \"build\", step.img%d.digest]\n    outputs = [\"artifact\"]\n  }\n", i, i)
		fmt.Fprintf(b, "  step \"run\" \"test%d\" {\n    script = \"go test ./... -run ${upper(\"x\")} # ${step.build%d.artifact}\"\n    env = { TOKEN = secret.token }\n    retry { attempts = 2 }\n  }\n", i, i)
		fmt.Fprintf(b, "  step \"scan\" \"scan%d\" {\n    image = step.img%d.digest_ref\n    fail_on = \"high\"\n  }\n", i, i)
		fmt.Fprintf(b, "  step \"verify\" \"verify%d\" {\n    prometheus = \"http://prometheus:9090\"\n    query = \"up{stage=\\\"s%d\\\"}\"\n    above = 0\n    for = \"1m\"\n    interval = \"10s\"\n  }\n}\n", i, i)
	}
	for i := range files {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.hcl", i)), []byte(files[i].String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

var benchOpts = Options{Git: defaultTestGit()}

// BenchmarkCompile1000Stages measures compiling a generated pipeline of
// 1,000 stages with five steps each, from parsed files to sealed plan. The
// target is under 100 ms and 100 MB: see docs/benchmarks.md.
func BenchmarkCompile1000Stages(b *testing.B) {
	src, diags := Load(generatePipeline(b, 1000))
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	benchPipeline(b, func() (*Sources, hcl.Diagnostics) { return src, nil })
}

// BenchmarkLoadCompile1000Stages measures the same pipeline from files on
// disk to sealed plan, parse included, as sluice plan does it.
func BenchmarkLoadCompile1000Stages(b *testing.B) {
	dir := generatePipeline(b, 1000)
	benchPipeline(b, func() (*Sources, hcl.Diagnostics) { return Load(dir) })
}

// benchPipeline compiles what load returns, b.N times, and reports besides
// time and allocations the CPU time per compilation of the whole process
// (the collector's included; steadier than wall time on a shared machine)
// and, from one more run, peak-heap-MB: the most the heap in use grew
// while loading and compiling, sampled every 100 µs.
func benchPipeline(b *testing.B, load func() (*Sources, hcl.Diagnostics)) {
	run := func() {
		src, diags := load()
		p, more := Compile(src, benchOpts)
		if diags = append(diags, more...); diags.HasErrors() {
			b.Fatal(diags)
		}
		if len(p.Stages) != 1000 {
			b.Fatalf("%d stages", len(p.Stages))
		}
	}
	b.ReportAllocs()
	cpu := processCPU()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	b.ReportMetric(heapPeak(run)/(1<<20), "peak-heap-MB")
}

// processCPU is the user and system time the process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapPeak runs f after a collection and returns the most the bytes of heap
// objects (live or not yet swept) exceeded their level before f, sampled
// every 100 µs while f runs.
func heapPeak(f func()) float64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() float64 {
		metrics.Read(sample)
		return float64(sample[0].Value.Uint64())
	}
	runtime.GC()
	base, peak := read(), 0.0
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(100 * time.Microsecond)
		defer t.Stop()
		for {
			peak = max(peak, read()-base)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	<-stopped
	return max(peak, read()-base)
}

// TestGeneratedPipelineCompiles keeps the benchmark's input valid, so that
// the benchmark measures a real compilation and not an early error.
func TestGeneratedPipelineCompiles(t *testing.T) {
	src, diags := Load(generatePipeline(t, 50))
	p, more := Compile(src, benchOpts)
	if diags = append(diags, more...); diags.HasErrors() {
		t.Fatal(diags)
	}
	if len(p.Stages) != 50 || len(p.Stages[49].Steps) != 5 || len(p.Stages[49].Steps[2].Refs) != 2 {
		t.Fatalf("unexpected plan shape: %d stages", len(p.Stages))
	}
}

// BenchmarkParse1000Stages measures the HCL parse of the same pipeline
// alone, to tell parser time from Sluice's own.
func BenchmarkParse1000Stages(b *testing.B) {
	dir := generatePipeline(b, 1000)
	files, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
	var size int64
	for _, f := range files {
		st, _ := os.Stat(f)
		size += st.Size()
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, diags := Load(dir); diags.HasErrors() {
			b.Fatal(diags)
		}
	}
}

// TestWriteGeneratedPipeline writes the benchmark's pipeline to the
// directory in $SLUICE_WRITE_GENERATED, so that whole commands can be
// measured on it (docs/benchmarks.md); without it, it does nothing.
func TestWriteGeneratedPipeline(t *testing.T) {
	dest := os.Getenv("SLUICE_WRITE_GENERATED")
	if dest == "" {
		return
	}
	dir := generatePipeline(t, 1000)
	files, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if err := os.WriteFile(filepath.Join(dest, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
