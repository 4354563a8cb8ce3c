package gitops

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// What Flux (`wait: true`, `healthChecks`) and `kstatus` users should read at each
// moment: done only when the model serves its version and nothing moves; failed fast when
// the operator has given up; in progress otherwise.
func TestKstatusReadsEachMomentAsAFluxUserWould(t *testing.T) {
	cases := []struct {
		moment string
		want   status.Status
	}{
		{"created", status.InProgressStatus},
		{"rolled-out", status.CurrentStatus},
		{"baking", status.InProgressStatus},
		{"canary-failed", status.FailedStatus},
		{"rollout-failed", status.FailedStatus},
		{"invalid-spec", status.FailedStatus},
		{"ownership-conflict", status.FailedStatus},
		{"registry-down", status.CurrentStatus},
		{"paused", status.CurrentStatus},
	}
	for _, c := range cases {
		t.Run(c.moment, func(t *testing.T) {
			// As the API server's JSON decodes for clients: integers as int64.
			obj := &unstructured.Unstructured{}
			if err := obj.UnmarshalJSON(fixtureBytes(t, c.moment)); err != nil {
				t.Fatalf("fixture %q: %v", c.moment, err)
			}
			result, err := status.Compute(obj)
			if err != nil {
				t.Fatalf("kstatus: %v", err)
			}
			if result.Status != c.want {
				t.Errorf("kstatus reads %s (%s), want %s", result.Status, result.Message, c.want)
			}
			t.Logf("%s: %s", result.Status, result.Message)
		})
	}
}
