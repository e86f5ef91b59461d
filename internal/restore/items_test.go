package restore

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func collect(l *Items) []Item { return slices.Collect(l.All()) }

func TestItemsRoundTrip(t *testing.T) {
	long := strings.Repeat("n", itemChunk+10) // a record larger than a chunk
	want := []Item{
		{Version: "v1", Resource: "namespaces", Kind: "Namespace", Name: "prod-b", SourceNamespace: "prod", Tier: 1, Action: Created},
		{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "prod-b", SourceNamespace: "prod", Name: "a", Tier: 8, Action: Created},
		{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "prod-b", Name: "b", Tier: 8, Action: SkippedFiltered, Reason: "labels not selected by the restore criteria"},
		{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "prod-b", Name: "c", Tier: 8, Action: SkippedFiltered, Reason: "labels not selected by the restore criteria"},
		{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: "prod-b", Name: "web", Tier: 10, Action: Failed, Reason: `create: deployments.apps "web" is forbidden`},
		{Group: "apps", Version: "v1", Resource: "replicasets", Kind: "ReplicaSet", Namespace: "prod-b", Name: long, Tier: 10, Action: SkippedOwned, Reason: "controlled by Deployment web, which is restored and recreates it"},
		{Group: "example.com", Version: "v1", Resource: "widgets", Kind: "Widget", Name: "w", Tier: 10, Action: Patched},
	}
	var l Items
	for _, it := range want {
		l.Append(it)
	}
	if l.Len() != len(want) {
		t.Fatalf("Len %d, want %d", l.Len(), len(want))
	}
	if got := collect(&l); !reflect.DeepEqual(got, want) {
		t.Fatalf("All:\n got %+v\nwant %+v", got, want)
	}
	if len(l.chunks) < 2 {
		t.Errorf("a record larger than a chunk went into %d chunk(s)", len(l.chunks))
	}
	// Repeated reasons are stored once; a reason naming its object is not.
	if !slices.Contains(l.strs, "labels not selected by the restore criteria") || slices.ContainsFunc(l.strs, func(s string) bool { return strings.Contains(s, "forbidden") }) {
		t.Errorf("interned strings %q", l.strs)
	}

	data, err := json.Marshal(&l)
	if err != nil {
		t.Fatal(err)
	}
	var plain []Item
	if err := json.Unmarshal(data, &plain); err != nil || !reflect.DeepEqual(plain, want) {
		t.Fatalf("JSON %s does not decode to the items (%v)", data[:200], err)
	}
	var back Items
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(collect(&back), want) {
		t.Fatalf("UnmarshalJSON: %v %+v", err, collect(&back))
	}
	// As a field of Result (not through a pointer), too.
	res := Result{Items: l}
	data, err = json.Marshal(res)
	if err != nil || !strings.Contains(string(data), `"items":[{"version":"v1","resource":"namespaces"`) {
		t.Fatalf("Result JSON %.300s (%v)", data, err)
	}
	var empty Items
	if data, err := json.Marshal(empty); err != nil || string(data) != "[]" {
		t.Errorf("empty items: %s %v", data, err)
	}
}

func TestItemsSort(t *testing.T) {
	in := []Item{
		{Version: "v1", Resource: "services", Kind: "Service", Namespace: "b", Name: "x", Tier: 10, Action: Created},
		{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment", Namespace: "b", Name: "x", Tier: 10, Action: Created},
		{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "b", Name: "b", Tier: 8, Action: Created},
		{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "a", Name: "z", Tier: 8, Action: Created},
		{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: "b", Name: "a", Tier: 8, Action: Failed, Reason: "create: b/a refused"},
		{Version: "v1", Resource: "namespaces", Kind: "Namespace", Name: "b", Tier: 1, Action: Created},
	}
	var l Items
	for _, it := range in {
		l.Append(it)
	}
	l.sort()
	var got []string
	for it := range l.All() {
		got = append(got, fmt.Sprintf("%d %s %s", it.Tier, it.Ref(), it.Reason))
	}
	want := []string{
		"1 namespaces b ",
		"8 configmaps a/z ",
		"8 configmaps b/a create: b/a refused",
		"8 configmaps b/b ",
		"10 deployments.apps b/x ",
		"10 services b/x ",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("sorted:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestItemsCompact: what a restore keeps per object stays small: the results
// of 100,000 objects and the restore's per-object state (owner set, UIDs)
// take under 80 bytes per object (56 when written). The Item slice and the
// string-keyed maps they replace took 565 bytes per object, measured alike.
func TestItemsCompact(t *testing.T) {
	const n = 100_000
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("obj-%06d", i)
	}
	before := heap()
	var l Items
	ids := newObjIDs()
	var owners ownerSet
	nsOf := func(i int) string { return fmt.Sprintf("restored-%03d", i%200) }
	for i, name := range names {
		owners.add(ids.of(objKey{"", "ConfigMap", nsOf(i), name}))
	}
	owners.seal()
	objs := newObjStates(&owners)
	for i, name := range names {
		ns := nsOf(i)
		l.Append(Item{Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespace: ns, SourceNamespace: "bench-" + ns[9:], Name: name, Tier: 8, Action: Created})
		objs.set(ids.of(objKey{"", "ConfigMap", ns, name}), types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)), true)
	}
	l.sort()
	perObject := float64(heap()-before) / n
	t.Logf("%.0f bytes per object", perObject)
	if perObject > 80 {
		t.Errorf("%.0f bytes kept per object, want at most 80", perObject)
	}
	runtime.KeepAlive(names)
	// Everything is still there.
	if l.Len() != n {
		t.Fatalf("Len %d", l.Len())
	}
	i := 0
	for it := range l.All() {
		if it.Name != names[i] && i < 200 {
			// sorted by namespace first: the first items are of restored-000
			if it.Namespace != "restored-000" {
				t.Fatalf("item %d: %+v", i, it)
			}
		}
		i++
	}
	id := ids.of(objKey{"", "ConfigMap", "restored-007", "obj-000007"})
	if uid, ok := objs.uid(id); !owners.has(id) || !ok || uid != "00000007-0000-4000-8000-000000000007" || !objs.planned(id) {
		t.Errorf("object 7: owner %v, uid %q %v, planned %v", owners.has(id), uid, ok, objs.planned(id))
	}
	if owners.has(ids.of(objKey{"", "ConfigMap", "restored-008", "obj-000007"})) {
		t.Error("an object that is not in the set is found")
	}
}

func TestObjStates(t *testing.T) {
	ids := newObjIDs()
	a, b, c := ids.of(objKey{"", "Namespace", "", "a"}), ids.of(objKey{"", "Namespace", "", "b"}), ids.of(objKey{"", "Namespace", "a", ""})
	// a and b are in the owner set, c is not (kept aside).
	var owners ownerSet
	owners.add(b)
	owners.add(a)
	owners.add(a)
	owners.seal()
	o := newObjStates(&owners)
	if len(owners.ids) != 2 || !owners.has(a) || !owners.has(b) || owners.has(c) {
		t.Fatalf("owner set %v", owners.ids)
	}
	if a == c || a == ids.of(objKey{"", "Namespace", "", "a "}) {
		t.Fatal("distinct keys hash alike")
	}
	if a != ids.of(objKey{"", "Namespace", "", "a"}) {
		t.Fatal("the same key hashes differently")
	}
	o.set(a, "6f1c2b9e-7d0a-4e3b-9c51-0a2b3c4d5e6f", false)
	o.set(b, "Not-A-UUID", true)
	o.set(c, "", true)
	for _, tc := range []struct {
		id      objID
		uid     types.UID
		known   bool
		planned bool
	}{{a, "6f1c2b9e-7d0a-4e3b-9c51-0a2b3c4d5e6f", true, false}, {b, "Not-A-UUID", true, true}, {c, "", false, true}} {
		uid, ok := o.uid(tc.id)
		if uid != tc.uid || ok != tc.known || o.planned(tc.id) != tc.planned {
			t.Errorf("got %q %v planned %v, want %q %v %v", uid, ok, o.planned(tc.id), tc.uid, tc.known, tc.planned)
		}
	}
	// An upper-case UUID is kept as written, not normalised.
	o.set(a, "6F1C2B9E-7D0A-4E3B-9C51-0A2B3C4D5E6F", true)
	if uid, _ := o.uid(a); uid != "6F1C2B9E-7D0A-4E3B-9C51-0A2B3C4D5E6F" || !o.planned(a) {
		t.Errorf("upper-case UID came back as %q", uid)
	}
	for _, s := range []string{"", "6f1c2b9e7d0a4e3b9c510a2b3c4d5e6f", "6f1c2b9e-7d0a-4e3b-9c51-0a2b3c4d5e6g", "6f1c2b9e-7d0a-4e3b-9c51+0a2b3c4d5e6f"} {
		if _, ok := parseUID(s); ok {
			t.Errorf("parseUID(%q) accepted", s)
		}
	}
}
