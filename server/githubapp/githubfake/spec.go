package githubfake

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/sluice-ci/sluice/internal/testing/apicheck"
)

// The API description the fake obeys: GitHub's REST description as the npm
// package @octokit/openapi ships it, pinned. It is OpenAPI 3.0.3, so
// kin-openapi loads it as it is.
const (
	OctokitPackage = "@octokit/openapi"
	OctokitVersion = "23.0.2"
	// specMember is the description's path inside the package tarball.
	specMember = "package/generated/api.github.com.json"
)

// SpecEnv names the environment variable that, when set, is the path of
// the description file to use instead of the cached download.
const SpecEnv = "SLUICE_GITHUB_OPENAPI"

// SpecPath returns where scripts/octokit-openapi.sh caches the
// description: ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/octokit-openapi-<v>/.
func SpecPath() (string, error) {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("finding the cache directory for GitHub's API description: %w", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "sluice", "octokit-openapi-"+OctokitVersion, filepath.FromSlash(specMember)), nil
}

var loadSpec = sync.OnceValues(func() (*openapi3.T, error) {
	file := os.Getenv(SpecEnv)
	if file == "" {
		var err error
		if file, err = SpecPath(); err != nil {
			return nil, err
		}
		if _, err := os.Stat(file); err != nil {
			if file, err = fetchSpec(); err != nil {
				return nil, err
			}
		}
	}
	doc, err := apicheck.LoadOpenAPI3(file)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		return nil, fmt.Errorf("%s is OpenAPI %s; the fake GitHub needs the 3.0 description", file, doc.OpenAPI)
	}
	return doc, nil
})

// Spec returns GitHub's REST API description, loaded once per process
// (the file is about 13 MB): from $SLUICE_GITHUB_OPENAPI when set, else
// from the cache SpecPath names, which it fills first with `npm pack`
// (through scripts/octokit-openapi.sh) when the file is not there.
func Spec() (*openapi3.T, error) { return loadSpec() }

// fetchSpec runs scripts/octokit-openapi.sh from this module's source
// tree and returns the path it prints.
func fetchSpec() (string, error) {
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "..", "..", "scripts", "octokit-openapi.sh")
	out, err := exec.Command("bash", script).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("fetching GitHub's API description (%s@%s) with npm failed: %s; run `make deps` (it needs npm and the npm registry), or set %s to the file's path", OctokitPackage, OctokitVersion, msg, SpecEnv)
	}
	return strings.TrimSpace(string(out)), nil
}
