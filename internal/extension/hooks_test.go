package extension

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// fakeExec records calls; commands in fail exit with status 3. The
// behaviour tests (node_hooks_test.go) use real containers; this one
// covers orderings that are hard to provoke there.
type fakeExec struct {
	calls []string
	fail  map[string]bool
}

func (f *fakeExec) Exec(_ context.Context, pod types.NamespacedName, _ string, cmd []string) (string, string, error) {
	c := pod.Name + ":" + strings.Join(cmd, " ")
	f.calls = append(f.calls, c)
	if f.fail[c] {
		return "", "boom\n", utilexec.CodeExitError{Err: errors.New("command terminated with non-zero exit code"), Code: 3}
	}
	return "ok " + c, "", nil
}

func claimsOf(names ...string) []types.NamespacedName {
	var out []types.NamespacedName
	for _, n := range names {
		out = append(out, types.NamespacedName{Namespace: "a", Name: n})
	}
	return out
}

// TestBackupHookOrder: pre commands before the snapshots, a pod's post
// commands as soon as its last claim is cut, a pod without a snapshotted
// claim gets its post commands right after its pre commands, and every
// onError policy.
func TestBackupHookOrder(t *testing.T) {
	h := func(onPre, onPost v1alpha1.HookErrorMode) *v1alpha1.HookSpec {
		return &v1alpha1.HookSpec{
			Pre:  []v1alpha1.ExecHook{{Command: []string{"pre1"}, OnError: onPre}, {Command: []string{"pre2"}, OnError: onPre}},
			Post: []v1alpha1.ExecHook{{Command: []string{"post1"}, OnError: onPost}, {Command: []string{"post2"}, OnError: onPost}},
		}
	}
	targets := func(spec *v1alpha1.HookSpec) []*backupTarget {
		t := func(pod string, claims ...string) *backupTarget {
			return &backupTarget{hookTarget: hookTarget{hook: "ns/h", pod: types.NamespacedName{Namespace: "a", Name: pod}, spec: spec}, claims: claimsOf(claims...)}
		}
		return []*backupTarget{t("p1", "c1", "c3"), t("p2", "c2"), t("p3", "unsnapshotted")}
	}
	for _, tc := range []struct {
		name      string
		spec      *v1alpha1.HookSpec
		fail      []string
		wantErr   string
		wantCalls string // before | after cut c2 | after cut c1 | after cut c3 | finish
		wantWarn  []string
	}{
		{name: "all succeed", spec: h(v1alpha1.HookFail, v1alpha1.HookFail),
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 p3:post1 p3:post2 | p2:post1 p2:post2 |  | p1:post1 p1:post2 | "},
		{name: "pre Fail stops; post of the pods reached runs at the end", spec: h(v1alpha1.HookFail, v1alpha1.HookFail), fail: []string{"p2:pre1"},
			wantErr:   v1alpha1.CodePreHookFailed,
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 |  |  |  | p1:post1 p1:post2 p2:post1 p2:post2"},
		{name: "pre Continue warns", spec: h(v1alpha1.HookContinue, v1alpha1.HookContinue), fail: []string{"p2:pre1"},
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 p3:post1 p3:post2 | p2:post1 p2:post2 |  | p1:post1 p1:post2 | ",
			wantWarn:  []string{v1alpha1.CodeHookFailed}},
		{name: "post Fail skips the pod's later post commands, warns", spec: h(v1alpha1.HookFail, v1alpha1.HookFail), fail: []string{"p2:post1"},
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 p3:post1 p3:post2 | p2:post1 |  | p1:post1 p1:post2 | ",
			wantWarn:  []string{v1alpha1.CodePostHookFailed}},
		{name: "post Continue warns and goes on", spec: h(v1alpha1.HookFail, v1alpha1.HookContinue), fail: []string{"p2:post1"},
			wantCalls: "p1:pre1 p1:pre2 p2:pre1 p2:pre2 p3:pre1 p3:pre2 p3:post1 p3:post2 | p2:post1 p2:post2 |  | p1:post1 p1:post2 | ",
			wantWarn:  []string{v1alpha1.CodeHookFailed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := &fakeExec{fail: map[string]bool{}}
			for _, f := range tc.fail {
				ex.fail[f] = true
			}
			hr := &hookRunner{ex: ex, now: time.Now}
			b := &backupHooks{run: hr, postCtx: context.Background(), resolve: func(context.Context) ([]*backupTarget, []v1alpha1.JobIssue, error) {
				return targets(tc.spec), nil, nil
			}}
			var steps []string
			mark := 0
			step := func() {
				steps = append(steps, strings.Join(ex.calls[mark:], " "))
				mark = len(ex.calls)
			}
			err := b.BeforeSnapshots(context.Background(), claimsOf("c1", "c2", "c3"))
			step()
			if err == nil {
				for _, c := range []string{"c2", "c1", "c3"} {
					b.SnapshotCut(context.Background(), claimsOf(c)[0])
					step()
				}
			} else {
				steps = append(steps, "", "", "")
			}
			b.Finish()
			step()
			if got := strings.Join(steps, " | "); got != tc.wantCalls {
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
			if len(hr.results) != len(ex.calls) {
				t.Fatalf("%d results for %d calls", len(hr.results), len(ex.calls))
			}
			for i, r := range hr.results {
				failedCall := ex.fail[strings.TrimPrefix(r.Pod, "a/")+":"+strings.Join(r.Command, " ")]
				switch {
				case failedCall && (r.ExitCode == nil || *r.ExitCode != 3 || r.Stderr != "boom\n" || !strings.Contains(r.Error, "exited with code 3: boom")):
					t.Errorf("result %d of a failed command: %+v", i, r)
				case !failedCall && (r.ExitCode == nil || *r.ExitCode != 0 || r.Error != "" || r.Stdout != "ok "+ex.calls[i]):
					t.Errorf("result %d: %+v", i, r)
				}
			}
		})
	}
}

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
		cut  bool
	}{
		{"short", 10, "short", false},
		{"0123456789", 4, "6789", true},
		{"aé", 1, "", true}, // never half a character
		{"xéy", 2, "y", true},
	} {
		got, cut := tail(tc.in, tc.max)
		if got != tc.want || cut != tc.cut {
			t.Errorf("tail(%q, %d) = %q, %v; want %q, %v", tc.in, tc.max, got, cut, tc.want, tc.cut)
		}
	}
}

// TestHookNamespaceRule: where a hook may act (the rule of
// docs/extension.md); the refusal itself is shown against the API server
// and a real pod in node_hooks_test.go.
func TestHookNamespaceRule(t *testing.T) {
	own := &hookDef{ns: "arca-system", own: true, spec: v1alpha1.HookSpec{IncludedNamespaces: []string{"shop*"}, ExcludedNamespaces: []string{"shop-old"}}}
	team := &hookDef{ns: "team-a"}
	teamExcl := &hookDef{ns: "team-a", spec: v1alpha1.HookSpec{ExcludedNamespaces: []string{"team-a"}}}
	refused := &hookDef{ns: "team-a", refusedAll: true}
	for _, tc := range []struct {
		d                *hookDef
		ns, source, home string
		want             bool
	}{
		{own, "shop", "", "arca-system", true},
		{own, "shop-old", "", "arca-system", false},
		{own, "kube-system", "", "arca-system", false},
		{own, "copy", "shop", "arca-system", true}, // restored from shop
		{team, "team-a", "", "team-a", true},
		{team, "team-b", "", "team-a", false},
		{team, "kube-system", "", "team-a", false},
		{team, "team-a-copy", "team-a", "team-a-copy", true}, // team-a restored into team-a-copy
		{team, "team-a", "", "team-a-copy", false},
		{teamExcl, "team-a", "", "team-a", false},
		{refused, "team-a", "", "team-a", false},
	} {
		if got := tc.d.acts(tc.ns, tc.source, tc.home); got != tc.want {
			t.Errorf("hook in %s (%+v) acts(%q, %q, %q) = %v", tc.d.ns, tc.d.spec, tc.ns, tc.source, tc.home, got)
		}
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

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 5}
	for _, w := range []string{"ab", "cd", "efg", "0123456789", "x"} {
		if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", w, n, err)
		}
	}
	if got := string(b.buf); got != "6789x" {
		t.Errorf("kept %q, want %q", got, "6789x")
	}
}
