package gitops

import (
	"os"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

// healthTests is deploy/argocd/health_test.yaml: Argo CD's own format (one test per
// input, the status and message expected), with `inputPath` naming a captured fixture
// and `messagePrefix` for messages that end in what the operator wrote (pod names).
type healthTests struct {
	Tests []struct {
		HealthStatus struct {
			Status        string `json:"status"`
			Message       string `json:"message"`
			MessagePrefix string `json:"messagePrefix"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

// newArgoState is a Lua state with the libraries Argo CD opens for health checks (base,
// table, package; its os is a safe subset this check does not use) and nothing else.
func newArgoState() *lua.LState {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	return l
}

// toLua converts decoded JSON the way Argo CD hands objects to Lua: maps and lists as
// tables (lists 1-based), numbers, strings, booleans, and nil.
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch v := v.(type) {
	case map[string]interface{}:
		t := l.NewTable()
		for k, item := range v {
			t.RawSetString(k, toLua(l, item))
		}
		return t
	case []interface{}:
		t := l.NewTable()
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	return lua.LNil
}

// health runs the check on obj as Argo CD does: the object in the global `obj`, the
// returned table's status and message.
func health(t *testing.T, script string, obj map[string]interface{}) (string, string) {
	t.Helper()
	l := newArgoState()
	defer l.Close()
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		t.Fatalf("health.lua: %v", err)
	}
	result, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, not a table", l.Get(-1).Type())
	}
	return result.RawGetString("status").String(), result.RawGetString("message").String()
}

func TestTheArgoCDHealthCheckReadsEachMoment(t *testing.T) {
	script, err := os.ReadFile("../../deploy/argocd/health.lua")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../deploy/argocd/health_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tests healthTests
	if err := yaml.Unmarshal(raw, &tests); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range tests.Tests {
		want := c.HealthStatus
		t.Run(c.InputPath, func(t *testing.T) {
			status, message := health(t, string(script), fixture(t, strings.TrimSuffix(c.InputPath, ".json")))
			seen[status] = true
			if status != want.Status {
				t.Errorf("status %q (%s), want %q", status, message, want.Status)
			}
			if want.Message != "" && message != want.Message {
				t.Errorf("message %q, want %q", message, want.Message)
			}
			if want.MessagePrefix != "" && !strings.HasPrefix(message, want.MessagePrefix) {
				t.Errorf("message %q, want it to start with %q", message, want.MessagePrefix)
			}
		})
	}
	for _, s := range []string{"Healthy", "Progressing", "Degraded", "Suspended"} {
		if !seen[s] && os.Getenv("FORECAST_GITOPS_FIXTURES") != "" {
			t.Errorf("no test reads %s", s)
		}
	}
}

// The check uses nothing outside Argo CD's library set: without `string`, `os` or `io`
// it still runs (a call into them would fail here as it would in Argo CD).
func TestTheHealthCheckNeedsNoLibraryArgoCDLeavesOut(t *testing.T) {
	script, err := os.ReadFile("../../deploy/argocd/health.lua")
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]interface{}{
		"metadata": map[string]interface{}{"generation": float64(1)},
		"spec":     map[string]interface{}{},
		"status": map[string]interface{}{
			"observedGeneration": float64(1),
			"conditions": []interface{}{
				map[string]interface{}{"type": "Ready", "status": "True", "reason": "Serving", "message": "2 pods serve version 3"},
			},
		},
	}
	status, message := health(t, string(script), obj)
	if status != "Healthy" || message != "2 pods serve version 3" {
		t.Errorf("%s: %s", status, message)
	}
	l := newArgoState()
	defer l.Close()
	if l.GetGlobal("string") != lua.LNil || l.GetGlobal("os") != lua.LNil || l.GetGlobal("io") != lua.LNil {
		t.Error("the test state opens a library Argo CD does not")
	}
}
