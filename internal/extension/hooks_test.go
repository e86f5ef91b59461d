package extension

import (
	"context"
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/arca-backup/arca/api/v1alpha1"
)

type fakeExec struct {
	calls []string
	fail  map[string]bool
}

func (f *fakeExec) Exec(_ context.Context, pod types.NamespacedName, _ string, cmd []string) (string, string, error) {
	c := pod.Name + ":" + strings.Join(cmd, " ")
	f.calls = append(f.calls, c)
	if f.fail[c] {
		return "", "boom", errors.New("exit status 1")
	}
	return "", "", nil
}

func TestHookOrderAndErrorPolicy(t *testing.T) {
	h := func(onPre, onPost v1alpha1.HookErrorMode) *v1alpha1.HookSpec {
		return &v1alpha1.HookSpec{
			Pre:  []v1alpha1.ExecHook{{Command: []string{"pre1"}, OnError: onPre}, {Command: []string{"pre2"}, OnError: onPre}},
			Post: []v1alpha1.ExecHook{{Command: []string{"post1"}, OnError: onPost}, {Command: []string{"post2"}, OnError: onPost}},
		}
	}
	targets := func(spec *v1alpha1.HookSpec) []hookTarget {
		return []hookTarget{
			{hook: "ns/h", pod: types.NamespacedName{Namespace: "a", Name: "p1"}, spec: spec},
			{hook: "ns/h", pod: types.NamespacedName{Namespace: "a", Name: "p2"}, spec: spec},
			{hook: "ns/h", pod: types.NamespacedName{Namespace: "a", Name: "p3"}, spec: spec},
		}
	}
	for _, tc := range []struct {
		name      string
		spec      *v1alpha1.HookSpec
		fail      []string
		wantErr   string
		wantCalls string
		wantWarn  []string
	}{
		{name: "all succeed", spec: h(v1alpha1.HookFail, v1alpha1.HookFail),
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 | p1:post1 p1:post2 p2:post1 p2:post2 p3:post1 p3:post2"},
		{name: "pre Fail stops, post of reached pods runs", spec: h(v1alpha1.HookFail, v1alpha1.HookFail), fail: []string{"p2:pre1"},
			wantErr:   v1alpha1.CodePreHookFailed,
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 | p1:post1 p1:post2 p2:post1 p2:post2"},
		{name: "pre Continue warns", spec: h(v1alpha1.HookContinue, v1alpha1.HookContinue), fail: []string{"p2:pre1"},
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 | p1:post1 p1:post2 p2:post1 p2:post2 p3:post1 p3:post2",
			wantWarn:  []string{v1alpha1.CodeHookFailed}},
		{name: "post Fail skips the pod's later post hooks, warns", spec: h(v1alpha1.HookFail, v1alpha1.HookFail), fail: []string{"p1:post1"},
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 | p1:post1 p2:post1 p2:post2 p3:post1 p3:post2",
			wantWarn:  []string{v1alpha1.CodePostHookFailed}},
		{name: "post Continue warns and goes on", spec: h(v1alpha1.HookFail, v1alpha1.HookContinue), fail: []string{"p1:post1"},
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 | p1:post1 p1:post2 p2:post1 p2:post2 p3:post1 p3:post2",
			wantWarn:  []string{v1alpha1.CodeHookFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := &fakeExec{fail: map[string]bool{}}
			for _, f := range tc.fail {
				ex.fail[f] = true
			}
			hr := &hookRunner{ex: ex, targets: targets(tc.spec)}
			err := hr.pre(context.Background())
			pre := len(ex.calls)
			hr.post(context.Background())
			got := strings.Join(ex.calls[:pre], " ") + " | " + strings.Join(ex.calls[pre:], " ")
			if got != tc.wantCalls {
				t.Errorf("calls\n got %s\nwant %s", got, tc.wantCalls)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && codeOf(err, "") != tc.wantErr {
				t.Errorf("error %v, want code %q", err, tc.wantErr)
			}
			var warn []string
			for _, w := range hr.warnings {
				warn = append(warn, w.Code)
			}
			if strings.Join(warn, ",") != strings.Join(tc.wantWarn, ",") {
				t.Errorf("warnings %v, want %v", hr.warnings, tc.wantWarn)
			}
		})
	}
}

func TestMatchNamespace(t *testing.T) {
	for _, tc := range []struct {
		ns      string
		in, out []string
		want    bool
	}{
		{"a", nil, nil, true},
		{"team-x", []string{"team-*"}, nil, true},
		{"team-x", []string{"team-*"}, []string{"team-x"}, false},
		{"b", []string{"a"}, nil, false},
	} {
		if got := matchNamespace(tc.ns, tc.in, tc.out); got != tc.want {
			t.Errorf("matchNamespace(%q, %v, %v) = %v", tc.ns, tc.in, tc.out, got)
		}
	}
}
