package plan

// The step kinds. A step block is written `step "<kind>" "<name>"`.
const (
	KindRun     = "run"
	KindImage   = "image"
	KindScan    = "scan"
	KindRelease = "release"
	KindArgoCD  = "argocd"
	KindVerify  = "verify"
	KindDagger  = "dagger"
)

// Kinds lists every step kind in the order the documentation presents them.
var Kinds = []string{KindRun, KindImage, KindScan, KindRelease, KindArgoCD, KindVerify, KindDagger}

// The struct tags below are the schema of each step kind; the dsl package
// decodes HCL into these structs by reading them:
//
//	hcl:"name"        an attribute (hcl:"name,block" for a nested block)
//	required:"true"   the attribute or block must be present
//	default:"value"   the value used when the attribute is absent
//	enum:"a|b|c"      the only values accepted
//
// Fields of type Template, []Template and map[string]Template may use
// run-time references (step outputs, secrets); all other fields must be
// known when the pipeline is compiled.

// RunStep runs a command or script, on the runner's host or, with Image, in
// a container.
type RunStep struct {
	Command []Template `json:"command,omitempty" hcl:"command"`
	Script  Template   `json:"script,omitzero" hcl:"script"`
	// Shell runs Script; the script is passed as its last argument.
	Shell      []string `json:"shell,omitempty" hcl:"shell"`
	Image      Template `json:"image,omitzero" hcl:"image"`
	WorkingDir string   `json:"working_dir,omitempty" hcl:"working_dir"`
	Cache      []string `json:"cache,omitempty" hcl:"cache"`
	// Secrets are files the command reads: each key is a file name in the
	// directory $SLUICE_SECRETS (/run/secrets in a container).
	Secrets map[string]Template `json:"secrets,omitempty" hcl:"secrets"`
	// Username and Password pull Image from its registry, instead of the
	// runner's docker login.
	Username Template `json:"username,omitzero" hcl:"username"`
	Password Template `json:"password,omitzero" hcl:"password"`
	// Outputs names what the step writes to $SLUICE_OUTPUT as name=value
	// lines; only declared outputs can be referenced by later steps.
	Outputs []string `json:"outputs,omitempty" hcl:"outputs"`
	// JUnit names the JUnit XML reports the step writes: paths or globs
	// (MatchGlob) relative to WorkingDir, which the runner reads when the
	// step ends, whether it succeeded or not.
	JUnit []string `json:"junit,omitempty" hcl:"junit"`
}

// ImageStep builds a container image with BuildKit and optionally pushes it.
type ImageStep struct {
	Context    string              `json:"context" hcl:"context" default:"."`
	Dockerfile string              `json:"dockerfile" hcl:"dockerfile" default:"Dockerfile"`
	Target     string              `json:"target,omitempty" hcl:"target"`
	BuildArgs  map[string]Template `json:"build_args,omitempty" hcl:"build_args"`
	Platforms  []string            `json:"platforms,omitempty" hcl:"platforms"`
	Labels     map[string]Template `json:"labels,omitempty" hcl:"labels"`
	Tags       []Template          `json:"tags" hcl:"tags" required:"true"`
	Push       bool                `json:"push,omitempty" hcl:"push"`
	CacheFrom  []Template          `json:"cache_from,omitempty" hcl:"cache_from"`
	CacheTo    []Template          `json:"cache_to,omitempty" hcl:"cache_to"`
	// Secrets are exposed to RUN --mount=type=secret,id=<key>.
	Secrets  map[string]Template `json:"secrets,omitempty" hcl:"secrets"`
	Username Template            `json:"username,omitzero" hcl:"username"`
	Password Template            `json:"password,omitzero" hcl:"password"`
}

// ScanStep scans a pushed image in Harbor and fails on findings at or above
// FailOn that are not allowed.
type ScanStep struct {
	Image    Template `json:"image" hcl:"image" required:"true"`
	FailOn   string   `json:"fail_on" hcl:"fail_on" default:"critical" enum:"none|low|medium|high|critical"`
	Allow    []Allow  `json:"allow,omitempty" hcl:"allow,block"`
	Harbor   Template `json:"harbor,omitzero" hcl:"harbor"`
	Username Template `json:"username,omitzero" hcl:"username"`
	Password Template `json:"password,omitzero" hcl:"password"`
}

// Allow accepts one known vulnerability, until an optional expiry date.
type Allow struct {
	ID     string `json:"id" hcl:"id" required:"true"`
	Until  string `json:"until,omitempty" hcl:"until"`
	Reason string `json:"reason,omitempty" hcl:"reason"`
}

// ReleaseStep creates a git tag and a GitHub release at the run's commit.
type ReleaseStep struct {
	Tag            Template `json:"tag" hcl:"tag" required:"true"`
	Name           Template `json:"name,omitzero" hcl:"name"`
	Notes          Template `json:"notes" hcl:"notes" default:"generate"`
	Draft          bool     `json:"draft,omitempty" hcl:"draft"`
	Prerelease     bool     `json:"prerelease,omitempty" hcl:"prerelease"`
	Repo           Template `json:"repo,omitzero" hcl:"repo"`
	Commit         Template `json:"commit,omitzero" hcl:"commit"`
	Token          Template `json:"token,omitzero" hcl:"token"`
	GitHubURL      string   `json:"github_url,omitempty" hcl:"github_url"`
	AppID          int      `json:"app_id,omitempty" hcl:"app_id"`
	InstallationID int      `json:"installation_id,omitempty" hcl:"installation_id"`
	PrivateKey     Template `json:"private_key,omitzero" hcl:"private_key"`
}

// ArgoCDStep hands a deploy to Argo CD by committing the new image to a
// GitOps repository, then optionally syncs and waits through Argo CD's API.
type ArgoCDStep struct {
	App    Template `json:"app" hcl:"app" required:"true"`
	Image  Template `json:"image" hcl:"image" required:"true"`
	GitOps *GitOps  `json:"gitops" hcl:"gitops,block" required:"true"`
	Wait   string   `json:"wait" hcl:"wait" default:"healthy" enum:"none|synced|healthy"`
	Server Template `json:"server,omitzero" hcl:"server"`
	Token  Template `json:"token,omitzero" hcl:"token"`
}

// GitOps says where in which repository the image is written.
type GitOps struct {
	Repo   Template `json:"repo" hcl:"repo" required:"true"`
	File   string   `json:"file" hcl:"file" required:"true"`
	Branch string   `json:"branch" hcl:"branch" default:"main"`
	// Format is how File holds the image; empty means guessed from its name.
	Format string `json:"format,omitempty" hcl:"format" enum:"kustomize|helm|argocd-source"`
	// ImageName selects the entry of a kustomization's `images` list.
	ImageName string `json:"image_name,omitempty" hcl:"image_name"`
	// Key is the dotted path of the image in a Helm values file.
	Key     string   `json:"key,omitempty" hcl:"key"`
	Token   Template `json:"token,omitzero" hcl:"token"`
	Message Template `json:"message,omitzero" hcl:"message"`
}

// VerifyStep watches a Prometheus query for a while and fails as soon as it
// crosses its bound.
type VerifyStep struct {
	Prometheus Template `json:"prometheus" hcl:"prometheus" required:"true"`
	Query      Template `json:"query" hcl:"query" required:"true"`
	Below      *float64 `json:"below,omitempty" hcl:"below"`
	Above      *float64 `json:"above,omitempty" hcl:"above"`
	For        Duration `json:"for" hcl:"for" required:"true"`
	Interval   Duration `json:"interval" hcl:"interval" default:"30s"`
	OnFailure  string   `json:"on_failure" hcl:"on_failure" default:"fail" enum:"fail|rollback"`
}

// DaggerStep calls a function of a Dagger module on a runner that reaches a
// Dagger engine.
type DaggerStep struct {
	Module   Template            `json:"module" hcl:"module" required:"true"`
	Function string              `json:"function" hcl:"function" required:"true"`
	Args     map[string]Template `json:"args,omitempty" hcl:"args"`
}

// KindOutputs lists the outputs each kind always produces. A run step also
// produces the outputs it declares.
var KindOutputs = map[string][]string{
	KindRun:     {"exit_code"},
	KindImage:   {"digest", "ref", "digest_ref"},
	KindScan:    {"critical", "high", "medium", "low", "unknown", "total"},
	KindRelease: {"tag", "url", "id"},
	KindArgoCD:  {"revision", "image", "previous_image"},
	KindVerify:  {"value"},
	KindDagger:  {"output"},
}

// KindLabels names, for each step kind that needs what not every runner
// has, the runner label of the runners that have it. The compiler adds the
// label to the runs_on of every stage holding such a step, so that only
// runners that declare it take the stage: a dagger step needs a runner that
// reaches a Dagger engine.
var KindLabels = map[string]string{
	KindDagger: "dagger",
}

// KindConfig returns a pointer to a new, empty configuration struct for a
// kind, or nil for an unknown kind.
func KindConfig(kind string) any {
	switch kind {
	case KindRun:
		return &RunStep{}
	case KindImage:
		return &ImageStep{}
	case KindScan:
		return &ScanStep{}
	case KindRelease:
		return &ReleaseStep{}
	case KindArgoCD:
		return &ArgoCDStep{}
	case KindVerify:
		return &VerifyStep{}
	case KindDagger:
		return &DaggerStep{}
	}
	return nil
}

// SetConfig stores a configuration returned by KindConfig into the step.
func (s *Step) SetConfig(cfg any) {
	switch c := cfg.(type) {
	case *RunStep:
		s.Run = c
	case *ImageStep:
		s.Image = c
	case *ScanStep:
		s.Scan = c
	case *ReleaseStep:
		s.Release = c
	case *ArgoCDStep:
		s.ArgoCD = c
	case *VerifyStep:
		s.Verify = c
	case *DaggerStep:
		s.Dagger = c
	default:
		panic("plan: SetConfig with unknown configuration type")
	}
}

// ValidSecretFile says whether name can name a file of a run step's
// secrets: one path element of letters, digits, '.', '-' and '_', neither
// "." nor "..".
func ValidSecretFile(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
