package buildkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"
)

// Credentials are the registry credentials a step gives for some hosts.
type Credentials struct {
	Username, Password string
}

// StepCredentials gives a step's username and password to the registry
// of every one of refs (image references; those that do not parse are
// skipped): nil when the step gives neither, an error when it gives one.
func StepCredentials(username, password string, refs ...string) (map[string]Credentials, error) {
	if username == "" && password == "" {
		return nil, nil
	}
	if username == "" || password == "" {
		return nil, errors.New("set both username and password, or neither (then the runner's docker login is used)")
	}
	creds := map[string]Credentials{}
	for _, r := range refs {
		ref, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			continue
		}
		h := reference.Domain(ref)
		creds[h] = Credentials{Username: username, Password: password}
		if h == "docker.io" {
			// Docker Hub's registry answers under another name.
			creds["registry-1.docker.io"] = creds[h]
		}
	}
	return creds, nil
}

// Auth is the session attachable that answers buildkitd's requests for
// registry credentials. Hosts in override (registry host names, such as
// "registry.example.com:5000") get the step's own credentials; every other
// host gets what the runner's Docker configuration holds: config.json in
// dockerConfig, or in $DOCKER_CONFIG or ~/.docker when it is empty, with
// its credential helpers.
func Auth(dockerConfig string, override map[string]Credentials) (session.Attachable, error) {
	cfg, err := LoadDockerConfig(dockerConfig)
	if err != nil {
		return nil, err
	}
	fromConfig := authprovider.LoadAuthConfig(cfg)
	provider := func(ctx context.Context, host string, scope []string, check authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
		if c, ok := override[host]; ok {
			return types.AuthConfig{ServerAddress: host, Username: c.Username, Password: c.Password}, nil
		}
		return fromConfig(ctx, host, scope, check)
	}
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{AuthConfigProvider: provider}), nil
}

// LoadDockerConfig reads the runner's Docker configuration (as docker
// login writes it); a missing file is an empty configuration.
func LoadDockerConfig(dir string) (*configfile.ConfigFile, error) {
	if dir == "" {
		dir = config.Dir()
	}
	f, err := os.Open(filepath.Join(dir, config.ConfigFileName))
	if os.IsNotExist(err) {
		return configfile.New(filepath.Join(dir, config.ConfigFileName)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the runner's Docker configuration: %w", err)
	}
	defer f.Close()
	cfg, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("reading the runner's Docker configuration %s: %w; fix or remove the file", f.Name(), err)
	}
	cfg.Filename = f.Name()
	return cfg, nil
}
