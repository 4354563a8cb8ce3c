// Package gitops checks what GitOps tools make of ForecastModels: kstatus (Flux, kubectl
// wait) and the shipped Argo CD health check, on objects the Rust end-to-end tests
// captured from the API server at each moment of a model's life
// ($FORECAST_GITOPS_FIXTURES/<moment>.json, written by `cargo xtask test`).
package gitops

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// fixtureBytes reads the object captured at `moment`; the test fails when it is missing
// (a capture point was lost), and is skipped when no fixtures directory is set.
func fixtureBytes(t *testing.T, moment string) []byte {
	t.Helper()
	dir := os.Getenv("FORECAST_GITOPS_FIXTURES")
	if dir == "" {
		t.Skip("FORECAST_GITOPS_FIXTURES is not set: run the tests with `cargo xtask test`, which captures the fixtures first")
	}
	raw, err := os.ReadFile(filepath.Join(dir, moment+".json"))
	if err != nil {
		t.Fatalf("the fixture %q was not captured by the end-to-end tests: %v", moment, err)
	}
	return raw
}

// fixture is the captured object as plain JSON values (numbers as float64, as Argo CD
// hands them to Lua).
func fixture(t *testing.T, moment string) map[string]interface{} {
	t.Helper()
	raw := fixtureBytes(t, moment)
	var obj map[string]interface{}
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("fixture %q: %v", moment, err)
	}
	return obj
}
