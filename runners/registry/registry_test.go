package registry_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sluice-ci/sluice/runners/baseimage"
	"github.com/sluice-ci/sluice/runners/registry"
)

func TestStartServesAndShares(t *testing.T) {
	home := t.TempDir()
	ctx := context.Background()
	r, err := registry.Start(ctx, registry.Options{Home: home, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Serving || !strings.HasPrefix(r.Host, "127.0.0.1:") {
		t.Fatalf("Start: serving %v at %s, want this process serving on 127.0.0.1", r.Serving, r.Host)
	}
	first, err := baseimage.Push(ctx, baseimage.Options{Registry: r.Host, SkipGolang: true})
	if err != nil {
		t.Fatal(err)
	}
	if !first[0].Pushed {
		t.Errorf("the first push of busybox:local was skipped")
	}
	// Another sluice of the same home uses the registry this one serves.
	other, err := registry.Start(ctx, registry.Options{Home: home, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	if other.Serving || other.Host != r.Host {
		t.Errorf("the second Start serves %v at %s, want the first one's %s", other.Serving, other.Host, r.Host)
	}
	again, err := baseimage.Push(ctx, baseimage.Options{Registry: other.Host, SkipGolang: true})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Pushed || again[0].Digest != first[0].Digest {
		t.Errorf("the second push: pushed %v, digest %s; want skipped with the same digest %s", again[0].Pushed, again[0].Digest, first[0].Digest)
	}
	// The storage outlives the process that served it.
	r.Close()
	if _, err := registry.Published(home); err == nil {
		t.Errorf("the address is still published after Close")
	}
	r2, err := registry.Start(ctx, registry.Options{Home: home, Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	ref, _ := name.ParseReference(r2.Host + "/busybox:local")
	desc, err := remote.Head(ref)
	if err != nil || desc.Digest != first[0].Digest {
		t.Errorf("after a restart busybox:local is %v (%v), want %s", desc, err, first[0].Digest)
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	r, err := registry.Serve(registry.ServeOptions{Dir: t.TempDir(), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Host == ln.Addr().String() || registry.Ping(context.Background(), r.Host) != nil {
		t.Errorf("with port %d taken the registry is at %s", port, r.Host)
	}
}

func TestReadOnlyRegistryRefusesPush(t *testing.T) {
	r, err := registry.Serve(registry.ServeOptions{Dir: t.TempDir(), Port: -1, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = baseimage.Push(context.Background(), baseimage.Options{Registry: r.Host, SkipGolang: true})
	if err == nil {
		t.Fatal("a read-only registry took the push")
	}
	for _, want := range []string{"pushing " + r.Host + "/busybox:local", "the registry refused it (405 Method Not Allowed)", "does not accept pushes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestSluiceRegistryThatDoesNotAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = registry.Start(context.Background(), registry.Options{Home: filepath.Join(t.TempDir(), "home"), Address: addr})
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "unset SLUICE_REGISTRY") {
		t.Errorf("error = %v, want one naming %s and SLUICE_REGISTRY", err, addr)
	}
}
