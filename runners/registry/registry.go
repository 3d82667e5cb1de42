package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // the storage driver
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sirupsen/logrus"

	"github.com/sluice-ci/sluice/internal/proc"
)

// EnvAddress names an existing registry (host:port) that the local stack
// uses instead of starting its own.
const EnvAddress = "SLUICE_REGISTRY"

// DefaultPort is the port the examples push to (localhost:5000/...); the
// registry takes another when it is in use.
const DefaultPort = 5000

// Options configures Start.
type Options struct {
	// Home holds the storage (Home/registry) and the published address.
	Home string
	// Address is an existing registry to use instead of starting one.
	Address string
	// Port is the port to try first; 0 means DefaultPort, -1 any free port.
	Port int
	// ReadOnly refuses every push: for tests of that refusal, and for
	// serving a store that must not change.
	ReadOnly bool
}

// Registry is a registry the local stack pushes to and pulls from.
type Registry struct {
	// Host is host:port, as written in image references.
	Host string
	// Serving says whether this process serves it.
	Serving bool

	home string
	srv  *http.Server
	done chan struct{}
}

// Info is what the process serving a home's registry publishes.
type Info struct {
	Address string `json:"address"`
	PID     int    `json:"pid"`
}

func infoFile(home string) string { return filepath.Join(home, "registry.json") }

// Start returns the registry the local stack uses: opts.Address when set;
// otherwise the one another sluice process serves for the same home; otherwise
// a new one served by this process until Close.
func Start(ctx context.Context, opts Options) (*Registry, error) {
	if opts.Address != "" {
		if err := Ping(ctx, opts.Address); err != nil {
			return nil, fmt.Errorf("using the registry %s (from %s): %w; start it, or unset %s to use Sluice's own", opts.Address, EnvAddress, err, EnvAddress)
		}
		return &Registry{Host: opts.Address}, nil
	}
	if info, err := Published(opts.Home); err == nil {
		if Ping(ctx, info.Address) == nil {
			return &Registry{Host: info.Address, home: opts.Home}, nil
		}
	}
	r, err := Serve(ServeOptions{Dir: filepath.Join(opts.Home, "registry"), Port: opts.Port, ReadOnly: opts.ReadOnly, Log: filepath.Join(opts.Home, "registry.log")})
	if err != nil {
		return nil, err
	}
	r.home = opts.Home
	if err := proc.WriteRecord(infoFile(opts.Home), Info{Address: r.Host, PID: os.Getpid()}); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// ServeOptions configures Serve.
type ServeOptions struct {
	// Dir holds the registry's storage.
	Dir string
	// Port is the port to try first on 127.0.0.1; 0 means DefaultPort, -1
	// any free port. Another is taken when it is in use.
	Port int
	// ReadOnly refuses every push.
	ReadOnly bool
	// Log receives distribution's warnings; "" discards them.
	Log string
	// Wrap, when set, wraps the registry's handler: tests put access
	// control in front of it.
	Wrap func(http.Handler) http.Handler
	// Listener, when set, is where the registry serves instead of Port:
	// a shared registry on an address other hosts reach.
	Listener net.Listener
}

// Serve starts a registry in this process and returns it serving.
func Serve(o ServeOptions) (*Registry, error) {
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the registry's storage: %w", err)
	}
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = listen(o.Port); err != nil {
			return nil, err
		}
	}
	quietLogs(o.Log)
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": o.Dir},
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": false},
				"readonly":      map[any]any{"enabled": o.ReadOnly},
			},
			"delete": configuration.Parameters{"enabled": true},
		},
	}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	var h http.Handler = handlers.NewApp(context.Background(), cfg)
	if o.Wrap != nil {
		h = o.Wrap(h)
	}
	r := &Registry{Host: ln.Addr().String(), Serving: true, done: make(chan struct{})}
	r.srv = &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// listen binds 127.0.0.1:port, or any free port when port is taken or -1.
func listen(port int) (net.Listener, error) {
	if port == 0 {
		port = DefaultPort
	}
	if port > 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("starting the local registry: %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting the local registry: %w", err)
	}
	return ln, nil
}

var logOnce sync.Once

// quietLogs sends distribution's logs (logrus's standard logger) to path
// at warning level: it logs every request otherwise.
func quietLogs(path string) {
	logOnce.Do(func() {
		logrus.SetLevel(logrus.WarnLevel)
		var w io.Writer = io.Discard
		if path != "" {
			if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
				w = f
			}
		}
		logrus.SetOutput(w)
	})
}

// Close stops serving, if this process serves the registry, and withdraws
// the published address.
func (r *Registry) Close() {
	if r == nil || r.srv == nil {
		return
	}
	if r.home != "" {
		var info Info
		proc.RemoveRecord(infoFile(r.home), &info, func() int { return info.PID })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	<-r.done
}

// Ping checks that a registry answers the OCI distribution API at host.
func Ping(ctx context.Context, host string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/v2/", nil)
	if err != nil {
		return fmt.Errorf("registry address %q: %w", host, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the registry at %s does not answer: %w", host, err)
	}
	resp.Body.Close()
	// 401 is a registry that wants credentials: it answers.
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("%s answered GET /v2/ with %s: it is not an OCI registry", host, resp.Status)
	}
	return nil
}

// Published returns the registry another sluice process serves for home.
// It returns an error wrapping fs.ErrNotExist when there is none, including
// when the process that published it has exited.
func Published(home string) (Info, error) {
	var info Info
	err := proc.ReadRecord(infoFile(home), &info, func() int { return info.PID })
	return info, err
}

// PushError turns a failed push of ref into an error that says what the
// registry answered and what to do about it.
func PushError(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return fmt.Errorf("pushing %s: the registry refused it (%d %s): it needs credentials that allow pushing there; log in with `docker login` (Sluice reads ~/.docker/config.json) or push to another registry: %w", ref, te.StatusCode, http.StatusText(te.StatusCode), err)
		case te.StatusCode == http.StatusMethodNotAllowed:
			return fmt.Errorf("pushing %s: the registry refused it (%d %s): it does not accept pushes (read-only?); push to another registry: %w", ref, te.StatusCode, http.StatusText(te.StatusCode), err)
		default:
			return fmt.Errorf("pushing %s: the registry refused it (%d %s): %w", ref, te.StatusCode, http.StatusText(te.StatusCode), err)
		}
	}
	return fmt.Errorf("pushing %s: %w", ref, err)
}
