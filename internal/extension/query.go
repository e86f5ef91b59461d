package extension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/yaml"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/backup"
	"github.com/arca-backup/arca/internal/diff"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/operations"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/sealed"
	"github.com/arca-backup/arca/internal/trustpolicy"
	"github.com/arca-backup/arca/internal/volumedata"
)

// RecoveryPointQuery: the vault asks what a recovery point holds (the
// contents browser, a diff, a vault-tier volume's files), and the
// extension, which holds the repository's password, answers in the
// query's status. Queries are short and read-only: they do not wait for
// the backup and restore job slots, run in the leader only (the
// controller needs leader election like the job controllers), at most
// queryWorkers at once, each bounded by queryTimeout. A vault's query
// (label arca.io/vault, bound by admission like the jobs) is judged by
// the vault's ClusterTrustPolicy: the storage location must be allowed,
// namespaces outside the policy are hidden, and its answer is sealed to
// the key in spec.recipientKey. A finished query is deleted after
// spec.ttlSeconds when its reader did not delete it.

const (
	queryWorkers = 2
	queryTimeout = 2 * time.Minute
	// maxFieldValue bounds one old or new value of a diff's field.
	maxFieldValue = 4 << 10
)

func (x *Extension) setupQueryController(mgr manager.Manager) error {
	inNS := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == x.opts.Namespace })
	return ctrl.NewControllerManagedBy(mgr).
		Named("recoverypointquery").
		For(&v1alpha1.RecoveryPointQuery{}, builder.WithPredicates(inNS, predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: queryWorkers}).
		Complete(reconcileFunc(x.reconcileQuery))
}

// reconcileQuery answers a new query once, and deletes a finished one
// when its TTL has passed.
func (x *Extension) reconcileQuery(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	q := &v1alpha1.RecoveryPointQuery{}
	if err := x.api.Get(ctx, req.NamespacedName, q); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ttl := time.Duration(q.Spec.TTLSeconds) * time.Second
	if q.Spec.TTLSeconds == 0 {
		ttl = v1alpha1.DefaultQueryTTLSeconds * time.Second
	}
	if q.Status.Phase.Terminal() {
		if q.Status.CompletionTime == nil {
			return ctrl.Result{}, nil
		}
		left := q.Status.CompletionTime.Add(ttl).Sub(x.clock.Now())
		if left > 0 {
			return ctrl.Result{RequeueAfter: left}, nil
		}
		err := x.client.Delete(ctx, q, client.Preconditions{UID: &q.UID})
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	orig := q.DeepCopy()
	res, err := x.answerQuery(qctx, q)
	now := metav1.NewTime(x.clock.Now())
	st := &q.Status
	st.CompletionTime = &now
	if err != nil {
		st.Phase, st.Message = v1alpha1.JobFailed, err.Error()
		st.Errors = []v1alpha1.JobIssue{{Code: codeOf(err, v1alpha1.CodeQueryFailed), Message: err.Error()}}
		var ref *trustpolicy.Refusal
		if errors.As(err, &ref) {
			st.Errors[0].Code, st.Message, st.Errors[0].Message = ref.Code, ref.Message, ref.Message
		}
	} else {
		st.Phase, st.Message = v1alpha1.JobCompleted, "answered"
		if q.Spec.RecipientKey == "" {
			st.Result = res
		} else {
			b, err := json.Marshal(res)
			if err == nil {
				st.Sealed, err = sealed.Seal(q.Spec.RecipientKey, b)
			}
			if err != nil {
				st.Phase, st.Message = v1alpha1.JobFailed, "seal the answer: "+err.Error()
				st.Errors = []v1alpha1.JobIssue{{Code: v1alpha1.CodeInvalidSpec, Message: st.Message}}
			}
		}
	}
	if err := x.client.Status().Patch(ctx, q, client.MergeFrom(orig)); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: ttl}, nil
}

// queryScope is what a query may see: everything for the owner's own
// queries, the policy's namespaces for a vault's.
type queryScope struct {
	namespace     func(string) bool
	clusterScoped bool
}

// visible reports whether an object (group, resource, namespace, name)
// may be shown: a namespaced object when its namespace is allowed, a
// Namespace when it is, another cluster-scoped object when the policy
// lets the vault restore cluster-scoped objects.
func (s queryScope) visible(group, resource, ns, name string, namespaced bool) bool {
	if namespaced {
		return s.namespace(ns)
	}
	if group == "" && resource == "namespaces" {
		return s.namespace(name)
	}
	return s.clusterScoped
}

func (x *Extension) answerQuery(ctx context.Context, q *v1alpha1.RecoveryPointQuery) (*v1alpha1.RecoveryPointQueryResult, error) {
	sp := &q.Spec
	scope := queryScope{namespace: func(string) bool { return true }, clusterScoped: true}
	use, refused := x.trustUse(ctx, q)
	if refused != nil {
		return nil, coded(refused.errors[0].Code, "%s", refused.message)
	}
	if use != nil {
		if sp.RecipientKey == "" {
			return nil, coded(v1alpha1.CodeQueryKeyRequired,
				"a query of vault %q must carry spec.recipientKey: its answer would otherwise be readable by every identity that may read queries", use.Vault)
		}
		use.StorageLocation = sp.StorageLocation
		if r := trustpolicy.Check(*use); r != nil {
			return nil, r
		}
		pol := &use.Policy.Spec
		scope = queryScope{namespace: func(ns string) bool { return trustpolicy.NamespaceAllowed(pol, ns) }, clusterScoped: pol.RestoreClusterScoped}
		if sp.Namespace != "" && sp.Namespace != v1alpha1.ClusterScopedNamespace && !scope.namespace(sp.Namespace) {
			return nil, &trustpolicy.Refusal{Code: v1alpha1.CodePolicyDeniesNamespace, Message: fmt.Sprintf(
				"namespace %q is outside the namespaces %v that ClusterTrustPolicy %q lets vault %q see", sp.Namespace, pol.Namespaces, use.Vault, use.Vault)}
		}
	}
	if sp.RecipientKey != "" {
		if _, err := sealed.ParsePublic(sp.RecipientKey); err != nil {
			return nil, coded(v1alpha1.CodeInvalidSpec, "%v", err)
		}
	}
	limit := sp.Limit
	if limit <= 0 || limit > v1alpha1.MaxQueryPageItems {
		limit = v1alpha1.MaxQueryPageItems
	}
	sa, err := x.openStorage(ctx, q.Namespace, sp.StorageLocation, false)
	if err != nil {
		return nil, err
	}
	defer sa.be.Close()
	r, err := sa.openReader(ctx)
	if err != nil {
		return nil, coded(codeOf(err, v1alpha1.CodeRepositoryUnavailable), "%v", err)
	}
	defer r.Close()
	rp, err := loadPoint(ctx, r, sp.RecoveryPoint, sp.StorageLocation)
	if err != nil {
		return nil, err
	}
	if err := checkVaultPoint(sp.VaultPoint, rp, false, "recovery point"); err != nil {
		return nil, err
	}
	switch sp.Kind {
	case v1alpha1.QueryContents:
		return queryContents(ctx, r, rp, sp, scope, limit)
	case v1alpha1.QueryDiff:
		return x.queryDiff(ctx, r, rp, sp, scope, limit)
	case v1alpha1.QueryFiles:
		return queryFiles(ctx, r, rp, sp, limit)
	case v1alpha1.QueryVolumes:
		return queryVolumes(rp, scope)
	}
	return nil, coded(v1alpha1.CodeInvalidSpec, "spec.kind %q: want Contents, Diff, Files or Volumes", sp.Kind)
}

func loadPoint(ctx context.Context, r repo.Reader, id, loc string) (*repo.RecoveryPoint, error) {
	pid, err := repo.ParseID(id)
	if err != nil {
		return nil, coded(v1alpha1.CodeInvalidSpec, "spec.recoveryPoint %q is not a full recovery point ID", id)
	}
	rp, err := r.LoadRecoveryPoint(ctx, pid)
	if err != nil {
		return nil, coded(v1alpha1.CodeRecoveryPointNotFound, "recovery point %s in storage location %q: %v", pid.Short(), loc, err)
	}
	return rp, nil
}

func typeName(group, resource string) string { return kube.GroupResource(group, resource) }

func nsKey(ns string, namespaced bool) string {
	if !namespaced {
		return v1alpha1.ClusterScopedNamespace
	}
	return ns
}

// queryContents: namespaces, then types, then objects, then one object.
func queryContents(ctx context.Context, r repo.Reader, rp *repo.RecoveryPoint, sp *v1alpha1.RecoveryPointQuerySpec, scope queryScope, limit int) (*v1alpha1.RecoveryPointQueryResult, error) {
	out := &v1alpha1.RecoveryPointQueryResult{}
	counts := map[string]int64{}
	var objects []v1alpha1.QueryObject
	var found *repo.TreeEntry
	for _, rt := range rp.Resources {
		tn := typeName(rt.Group, rt.Resource)
		if sp.Type != "" && tn != sp.Type {
			continue
		}
		err := r.WalkTree(ctx, rt.Tree, func(e repo.TreeEntry) error {
			if !scope.visible(rt.Group, rt.Resource, e.Namespace, e.Name, rt.Namespaced) {
				out.Hidden++
				return nil
			}
			ns := nsKey(e.Namespace, rt.Namespaced)
			switch {
			case sp.Namespace == "":
				counts[ns]++
			case ns != sp.Namespace:
			case sp.Type == "":
				counts[tn]++
			case sp.Name == "":
				objects = append(objects, v1alpha1.QueryObject{Type: tn, Kind: rt.Kind, Namespace: e.Namespace, Name: e.Name, Size: e.Size})
			case e.Name == sp.Name:
				e := e
				found = &e
			}
			return nil
		})
		if err != nil {
			return nil, coded(v1alpha1.CodeQueryFailed, "recovery point %s: read the tree of %s: %v", rp.ID.Short(), tn, err)
		}
	}
	switch {
	case sp.Namespace != "" && sp.Type != "" && sp.Name != "":
		if found == nil {
			return nil, coded(v1alpha1.CodeObjectNotFound, "recovery point %s holds no %s %s", rp.ID.String(), sp.Type, objectName(sp.Namespace, sp.Name))
		}
		var data []byte
		for _, id := range found.Blobs {
			b, err := r.LoadBlob(ctx, id)
			if err != nil {
				return nil, coded(v1alpha1.CodeQueryFailed, "%s %s in recovery point %s: %v", sp.Type, objectName(sp.Namespace, sp.Name), rp.ID.Short(), err)
			}
			data = append(data, b...)
		}
		if isSecret(found.Group, found.Resource) && !sp.RevealSecrets {
			data = redactSecret(data)
		}
		y, err := yaml.JSONToYAML(data)
		if err != nil {
			return nil, coded(v1alpha1.CodeQueryFailed, "%s %s in recovery point %s: %v", sp.Type, objectName(sp.Namespace, sp.Name), rp.ID.Short(), err)
		}
		if len(y) > v1alpha1.MaxQueryReadBytes {
			y, out.Truncated = y[:v1alpha1.MaxQueryReadBytes], true
		}
		out.Object = string(y)
		out.Hidden = 0
	case sp.Namespace != "" && sp.Type != "":
		sort.Slice(objects, func(i, j int) bool { return objects[i].Name < objects[j].Name })
		i := 0
		if sp.Continue != "" {
			i = sort.Search(len(objects), func(i int) bool { return objects[i].Name > sp.Continue })
		}
		end := min(len(objects), i+limit)
		out.Objects = objects[i:end]
		if end < len(objects) {
			out.Continue = objects[end-1].Name
		}
	default:
		names := make([]string, 0, len(counts))
		for n := range counts {
			names = append(names, n)
		}
		slices.Sort(names)
		i := 0
		if sp.Continue != "" {
			i = sort.SearchStrings(names, sp.Continue+"\x00")
		}
		end := min(len(names), i+limit)
		page := make([]v1alpha1.QueryCount, 0, end-i)
		for _, n := range names[i:end] {
			page = append(page, v1alpha1.QueryCount{Name: n, Count: counts[n]})
		}
		if end < len(names) {
			out.Continue = names[end-1]
		}
		if sp.Namespace == "" {
			out.Namespaces = page
		} else {
			out.Types = page
		}
	}
	return out, nil
}

func objectName(ns, name string) string {
	if ns == "" || ns == v1alpha1.ClusterScopedNamespace {
		return name
	}
	return ns + "/" + name
}

func isSecret(group, resource string) bool { return group == "" && resource == "secrets" }

// lastApplied is kubectl's copy of an object in an annotation: for a
// Secret it holds the data.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// redactSecret replaces the values of a Secret's data and stringData (and
// kubectl's last-applied copy) by their length.
func redactSecret(data []byte) []byte {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return []byte(`{"redacted":"the Secret could not be parsed, so none of it is shown"}`)
	}
	for _, f := range []string{"data", "stringData"} {
		if d, ok := m[f].(map[string]any); ok {
			for k, v := range d {
				s, _ := v.(string)
				d[k] = fmt.Sprintf("<redacted: %d characters>", len(s))
			}
		}
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		if an, ok := md["annotations"].(map[string]any); ok {
			if _, ok := an[lastApplied]; ok {
				an[lastApplied] = "<redacted>"
			}
		}
	}
	b, _ := json.Marshal(m)
	return b
}

// secretField reports whether a diff path of a Secret holds its data.
func secretField(path string) bool {
	for _, p := range []string{"data", "stringData"} {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return strings.Contains(path, lastApplied)
}

func (x *Extension) queryDiff(ctx context.Context, r repo.Reader, rp *repo.RecoveryPoint, sp *v1alpha1.RecoveryPointQuerySpec, scope queryScope, limit int) (*v1alpha1.RecoveryPointQueryResult, error) {
	oldSide := diff.RecoveryPoint(rp, r)
	var newSide diff.Side
	switch {
	case sp.Live && sp.Against != "":
		return nil, coded(v1alpha1.CodeInvalidSpec, "a diff compares with spec.against or with the live cluster (spec.live), not both")
	case sp.Live:
		var cfg v1alpha1.BackupConfiguration
		if len(rp.Config) > 0 {
			if err := json.Unmarshal(rp.Config, &cfg); err != nil {
				return nil, coded(v1alpha1.CodeQueryFailed, "recovery point %s: its backup configuration: %v", rp.ID.Short(), err)
			}
		}
		// The extension's own namespace holds storage credentials: never
		// compared unless the point's configuration names it.
		if !slices.Contains(cfg.IncludedNamespaces, x.opts.Namespace) {
			cfg.ExcludedNamespaces = append(slices.Clone(cfg.ExcludedNamespaces), x.opts.Namespace)
		}
		newSide = diff.Cluster(x.cfg, backup.Options{Config: cfg})
	case sp.Against != "":
		other, err := loadPoint(ctx, r, sp.Against, sp.StorageLocation)
		if err != nil {
			return nil, err
		}
		if err := checkVaultPoint(sp.VaultPoint, other, true, "spec.against: recovery point"); err != nil {
			return nil, err
		}
		newSide = diff.RecoveryPoint(other, r)
	default:
		return nil, coded(v1alpha1.CodeInvalidSpec, "a diff needs spec.against (another point's full ID) or spec.live")
	}
	rep, err := diff.Compare(ctx, oldSide, newSide, diff.Options{})
	if err != nil {
		return nil, coded(v1alpha1.CodeQueryFailed, "diff of recovery point %s: %v", rp.ID.Short(), err)
	}
	out := &v1alpha1.RecoveryPointQueryResult{Unchanged: rep.Unchanged}
	var changes []v1alpha1.QueryChange
	for _, c := range rep.Changes {
		k := c.Key
		if !scope.visible(k.Group, k.Resource, k.Namespace, k.Name, k.Namespace != "") {
			out.Hidden++
			continue
		}
		tn := typeName(k.Group, k.Resource)
		if (sp.Namespace != "" && nsKey(k.Namespace, k.Namespace != "") != sp.Namespace) || (sp.Type != "" && tn != sp.Type) || (sp.Name != "" && k.Name != sp.Name) {
			continue
		}
		qc := v1alpha1.QueryChange{Type: string(c.Type), Object: k.String(), Resource: tn, Namespace: k.Namespace, Name: k.Name}
		for _, f := range c.Fields {
			fc := v1alpha1.QueryFieldChange{Path: f.Path, Old: clip(f.Old), New: clip(f.New)}
			if isSecret(k.Group, k.Resource) && !sp.RevealSecrets && secretField(f.Path) {
				fc.Old, fc.New = redacted(f.Old), redacted(f.New)
			}
			qc.Fields = append(qc.Fields, fc)
		}
		switch c.Type {
		case diff.Added:
			out.Added++
		case diff.Removed:
			out.Removed++
		default:
			out.Modified++
		}
		changes = append(changes, qc)
	}
	i := 0
	if sp.Continue != "" {
		if _, err := fmt.Sscanf(sp.Continue, "%d", &i); err != nil || i < 0 || i > len(changes) {
			return nil, coded(v1alpha1.CodeInvalidSpec, "spec.continue %q is not a token of this diff", sp.Continue)
		}
	}
	size := 0
	end := i
	for end < len(changes) && end-i < limit && size < v1alpha1.MaxQueryReadBytes {
		b, _ := json.Marshal(changes[end])
		size += len(b)
		end++
	}
	out.Changes = changes[i:end]
	if end < len(changes) {
		out.Continue = fmt.Sprint(end)
	}
	return out, nil
}

func clip(v json.RawMessage) string {
	if len(v) > maxFieldValue {
		return string(v[:maxFieldValue]) + "…"
	}
	return string(v)
}

func redacted(v json.RawMessage) string {
	if len(v) == 0 {
		return ""
	}
	return `"<redacted>"`
}

// queryFiles lists a directory of a vault-tier volume, or reads a window
// of one file.
func queryFiles(ctx context.Context, r repo.Reader, rp *repo.RecoveryPoint, sp *v1alpha1.RecoveryPointQuerySpec, limit int) (*v1alpha1.RecoveryPointQueryResult, error) {
	var names []string
	var src *volumedata.Source
	for _, vd := range rp.VolumeData {
		names = append(names, vd.Name)
		if vd.Name == sp.Volume || (sp.Volume == "" && len(rp.VolumeData) == 1) {
			src = &volumedata.Source{Repo: r, Point: rp.ID.String(), Data: vd}
		}
	}
	if src == nil {
		switch {
		case len(names) == 0:
			return nil, coded(v1alpha1.CodeVolumeNotFound, "recovery point %s holds no volume data (its volumes are protected by snapshots only); back up with the vault tier to browse files", rp.ID.Short())
		case sp.Volume == "":
			return nil, coded(v1alpha1.CodeVolumeNotFound, "recovery point %s holds %d volumes: choose one (%s)", rp.ID.Short(), len(names), strings.Join(names, ", "))
		default:
			return nil, coded(v1alpha1.CodeVolumeNotFound, "recovery point %s has no volume %q; it holds: %s", rp.ID.Short(), sp.Volume, strings.Join(names, ", "))
		}
	}
	fileErr := func(err error) error {
		if errors.Is(err, volumedata.ErrPathNotFound) {
			return coded(v1alpha1.CodePathNotFound, "%v", err)
		}
		return coded(v1alpha1.CodeQueryFailed, "%v", err)
	}
	out := &v1alpha1.RecoveryPointQueryResult{}
	if sp.Read {
		e, err := volumedata.Find(ctx, *src, sp.Path)
		if err != nil {
			return nil, fileErr(err)
		}
		if e.Type == repo.FileHardlink {
			if e, err = volumedata.Find(ctx, *src, e.Link); err != nil {
				return nil, fileErr(err)
			}
		}
		n := sp.Length
		if n <= 0 || n > v1alpha1.MaxQueryReadBytes {
			n = v1alpha1.MaxQueryReadBytes
		}
		w := &window{from: sp.Offset, to: sp.Offset + n}
		if err := volumedata.Cat(ctx, *src, sp.Path, w); err != nil && !errors.Is(err, errWindowFull) {
			return nil, fileErr(err)
		}
		out.Data, out.Size = w.buf, e.Size
		out.EOF = sp.Offset+int64(len(w.buf)) >= e.Size
		return out, nil
	}
	root := strings.Trim(sp.Path, "/")
	err := volumedata.List(ctx, *src, sp.Path, false, func(e repo.FileEntry) error {
		if e.Path == root && e.Type == repo.FileDir {
			return nil // the directory itself
		}
		if sp.Continue != "" && repo.ComparePaths(e.Path, strings.TrimPrefix(sp.Continue, "/")) <= 0 {
			return nil
		}
		if len(out.Files) == limit {
			out.Continue = out.Files[len(out.Files)-1].Path
			return errWindowFull
		}
		out.Files = append(out.Files, v1alpha1.QueryFile{Path: "/" + e.Path, Type: e.Type.String(), Mode: fmt.Sprintf("%04o", e.Mode),
			UID: e.UID, GID: e.GID, Size: e.Size, Modified: metav1.NewTime(time.Unix(0, e.MTime).UTC()), ModifiedNanos: e.MTime, Link: e.Link})
		return nil
	})
	if err != nil && !errors.Is(err, errWindowFull) {
		return nil, fileErr(err)
	}
	return out, nil
}

// queryVolumes lists a point's volumes: its snapshot records, the claims
// it skipped and its vault-tier data, one entry per claim, sorted by
// namespace/claim; claims in namespaces outside scope are hidden (counted).
// A point holds at most a few hundred claims, so the answer is one page.
func queryVolumes(rp *repo.RecoveryPoint, scope queryScope) (*v1alpha1.RecoveryPointQueryResult, error) {
	recs, err := operations.VolumeRecords(rp)
	if err != nil {
		return nil, coded(v1alpha1.CodeQueryFailed, "recovery point %s: %v", rp.ID.Short(), err)
	}
	out := &v1alpha1.RecoveryPointQueryResult{}
	byName := map[string]*v1alpha1.QueryVolume{}
	get := func(ns, claim string) *v1alpha1.QueryVolume {
		name := ns + "/" + claim
		if v := byName[name]; v != nil {
			return v
		}
		if !scope.namespace(ns) {
			out.Hidden++
			return nil
		}
		v := &v1alpha1.QueryVolume{Name: name, Namespace: ns, Claim: claim}
		byName[name] = v
		return v
	}
	for _, rec := range recs.Snapshots {
		if v := get(rec.Namespace, rec.PVC); v != nil {
			t := metav1.NewTime(rec.Time)
			v.PV, v.Driver, v.StorageClass, v.VolumeMode, v.Size = rec.PV, rec.Driver, rec.StorageClass, rec.VolumeMode, rec.RestoreSize
			v.SnapshotHandle, v.Content, v.SnapshotTime = rec.SnapshotHandle, rec.Content, &t
		}
	}
	for _, sk := range recs.Skipped {
		if v := get(sk.Namespace, sk.PVC); v != nil {
			v.SkippedCode, v.SkippedMessage = sk.Code, sk.Message
		}
	}
	for _, vd := range rp.VolumeData {
		ns, claim, ok := strings.Cut(vd.Name, "/")
		if !ok {
			ns, claim = "", vd.Name // a name the writer chose: shown, as the owner's scope has no namespace to judge
		}
		var v *v1alpha1.QueryVolume
		if ok {
			v = get(ns, claim)
		} else if v = byName[vd.Name]; v == nil && scope.clusterScoped {
			v = &v1alpha1.QueryVolume{Name: vd.Name, Claim: claim}
			byName[vd.Name] = v
		} else if v == nil {
			out.Hidden++
		}
		if v != nil {
			v.Data = &v1alpha1.QueryVolumeData{Block: vd.Block, Files: vd.Files, Bytes: vd.Bytes, NewBytes: vd.NewBytes,
				DurationMillis: int64(vd.DurationSeconds * 1000)}
		}
	}
	out.Volumes = make([]v1alpha1.QueryVolume, 0, len(byName))
	for _, v := range byName {
		out.Volumes = append(out.Volumes, *v)
	}
	sort.Slice(out.Volumes, func(i, j int) bool { return out.Volumes[i].Name < out.Volumes[j].Name })
	return out, nil
}

var errWindowFull = errors.New("page full")

// window keeps the bytes [from, to) of a stream and stops it after.
type window struct {
	from, to, pos int64
	buf           []byte
}

var _ io.Writer = (*window)(nil)

func (w *window) Write(p []byte) (int, error) {
	start, end := w.pos, w.pos+int64(len(p))
	w.pos = end
	if lo, hi := max(start, w.from), min(end, w.to); lo < hi {
		w.buf = append(w.buf, p[lo-start:hi-start]...)
	}
	if end >= w.to {
		return len(p), errWindowFull
	}
	return len(p), nil
}
