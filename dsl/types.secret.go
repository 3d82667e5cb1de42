package dsl

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

// secretBlock says where a runner finds a secret. Its value is never read
// at compile time.
type secretBlock struct {
	env, file string
}

// SecretSchema is the schema of a secret block.
type SecretSchema struct {
	Env         string `hcl:"env"`
	File        string `hcl:"file"`
	Description string `hcl:"description"`
}

func (c *compiler) decodeSecret(b *hcl.Block) {
	var s SecretSchema
	c.decodeBody(b.Body, nil, scope{what: "a secret block"}, fmt.Sprintf("secret %q", b.Labels[0]), b.DefRange, nil, &s)
	if (s.Env == "") == (s.File == "") {
		c.add(errorDiag("Secret source missing", fmt.Sprintf("Secret %q must say where the runner finds it: either env = \"NAME\" (an environment variable of the runner) or file = \"/path\" (a file on the runner), not both.", b.Labels[0]), &b.DefRange, nil))
	}
	c.secrets[b.Labels[0]] = &secretBlock{env: s.Env, file: s.File}
}
