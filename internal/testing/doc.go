// Package testing holds, in its subdirectories, what only tests use: they
// start real servers for tests (buildtest: buildkitd and a registry;
// netns: hosts as network namespaces; browsertest: headless Chromium;
// pgtest: PostgreSQL),
// check fakes against the real services' API descriptions (apicheck). No
// production package imports them; what ships is the rest of internal/.
package testing
