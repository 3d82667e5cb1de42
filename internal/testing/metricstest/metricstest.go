// Package metricstest reads a /metrics endpoint in tests as Prometheus
// reads it, with Prometheus's own text parser.
package metricstest

import (
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families one scrape read, by name.
type Families map[string]*Family

// Family is one metric family: its type and samples.
type Family struct {
	Type    string
	Samples []Sample
}

// Sample is one series' value: a histogram's is its count.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Scrape reads url, failing t when it cannot.
func Scrape(t testing.TB, url string) Families {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	out := Families{}
	for name, f := range families {
		fam := &Family{Type: f.GetType().String()}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			fam.Samples = append(fam.Samples, Sample{labels, v})
		}
		out[name] = fam
	}
	return out
}

// Value is the first sample of family name whose labels include want.
func (fs Families) Value(name string, want map[string]string) (float64, bool) {
	f := fs[name]
	if f == nil {
		return 0, false
	}
next:
	for _, s := range f.Samples {
		for k, v := range want {
			if s.Labels[k] != v {
				continue next
			}
		}
		return s.Value, true
	}
	return 0, false
}
