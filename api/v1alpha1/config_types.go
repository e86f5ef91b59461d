// Package v1alpha1 is Arca's API group arca.io, version v1alpha1.
//
// It holds the types that the backup engine, the extension's custom
// resources and the vault share: what a backup includes
// (BackupConfiguration), what a restore does (RestoreCriteria) and how
// restored objects are rewritten (ResourceModifierRule). The field names are
// the vocabulary of the architecture brief, in camelCase.
package v1alpha1

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// GroupName is the API group of Arca's own resources.
const GroupName = "arca.io"

// Version is the API version of this package.
const Version = "v1alpha1"

// Labels put on restored objects.
const (
	LabelRecoveryPoint = "arca.io/recovery-point" // a 32-hex-character prefix of the recovery point ID
	LabelRestore       = "arca.io/restore"        // the restore's name
)

// DefaultExcludedNamespaces are left out of a backup unless named in
// IncludedNamespaces: they belong to the cluster, not to its workloads. The
// extension's own namespace is among them: it holds the Secrets with the
// repository password and the storage credentials.
var DefaultExcludedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease", ExtensionNamespace}

// BackupConfiguration says which Kubernetes resources a backup includes.
// Every filter is AND-ed with the others. The zero value backs up every
// namespace except DefaultExcludedNamespaces, every resource type, and the
// cluster-scoped resources.
type BackupConfiguration struct {
	// IncludedNamespaces lists namespaces or glob patterns (path.Match:
	// `team-*`, `app?`). Empty or "*" means all.
	IncludedNamespaces []string `json:"includedNamespaces,omitempty"`
	// ExcludedNamespaces lists namespaces or glob patterns left out.
	ExcludedNamespaces []string `json:"excludedNamespaces,omitempty"`
	// IncludedResourceTypes names resource types by resource or kind, with an
	// optional group: `deployments.apps`, `Deployment.apps`, `Secret`,
	// `configmaps`. Empty or "*" means all.
	IncludedResourceTypes []string `json:"includedResourceTypes,omitempty"`
	// ExcludedResourceTypes names resource types left out, same syntax.
	ExcludedResourceTypes []string `json:"excludedResourceTypes,omitempty"`
	// LabelSelectors are Kubernetes label selectors (`app=web`, `tier!=db`,
	// `env in (a,b)`, `!legacy`); inside one string `;` also separates
	// requirements. All requirements of all strings are AND-ed.
	LabelSelectors []string `json:"labelSelectors,omitempty"`
	// IncludeClusterScopeResources includes cluster-scoped resources (and the
	// cluster-scoped objects that included objects depend on). Default true.
	IncludeClusterScopeResources *bool `json:"includeClusterScopeResources,omitempty"`
	// IncludeSecrets includes Secrets. Default true.
	IncludeSecrets *bool `json:"includeSecrets,omitempty"`
	// SnapshotVolumes takes CSI snapshots of included PVCs. Default true.
	SnapshotVolumes *bool `json:"snapshotVolumes,omitempty"`
	// BackupHookReferences name BackupHook resources to run.
	BackupHookReferences []NamespacedName `json:"backupHookReferences,omitempty"`
}

// NamespacedName references a namespaced object.
type NamespacedName struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// ClusterScope reports IncludeClusterScopeResources with its default.
func (c *BackupConfiguration) ClusterScope() bool {
	return boolOr(c.IncludeClusterScopeResources, true)
}

// Secrets reports IncludeSecrets with its default.
func (c *BackupConfiguration) Secrets() bool { return boolOr(c.IncludeSecrets, true) }

// Snapshots reports SnapshotVolumes with its default.
func (c *BackupConfiguration) Snapshots() bool { return boolOr(c.SnapshotVolumes, true) }

// Validate checks the syntax of every field. Whether a resource type exists
// is only known against a cluster; the engine checks that before writing.
func (c *BackupConfiguration) Validate() error {
	var errs []error
	errs = append(errs, validateNamespacePatterns("includedNamespaces", c.IncludedNamespaces)...)
	errs = append(errs, validateNamespacePatterns("excludedNamespaces", c.ExcludedNamespaces)...)
	errs = append(errs, validateTypes("includedResourceTypes", c.IncludedResourceTypes)...)
	errs = append(errs, validateTypes("excludedResourceTypes", c.ExcludedResourceTypes)...)
	if _, err := ParseLabelSelectors(c.LabelSelectors); err != nil {
		errs = append(errs, fmt.Errorf("labelSelectors: %w", err))
	}
	for i, h := range c.BackupHookReferences {
		if h.Name == "" || h.Namespace == "" {
			errs = append(errs, fmt.Errorf("backupHookReferences[%d]: namespace and name are required", i))
		}
	}
	return errors.Join(errs...)
}

// ConflictPolicy says what a restore does with an object that already exists.
type ConflictPolicy string

const (
	// ConflictSkip leaves the existing object alone (the default).
	ConflictSkip ConflictPolicy = "Skip"
	// ConflictPatch patches the existing object's mutable fields to the
	// backed-up values; immutable differences fail the item.
	ConflictPatch ConflictPolicy = "Patch"
)

// PersistentVolumeRestoreMode says whether volume data is restored.
type PersistentVolumeRestoreMode string

const (
	RestoreWithVolumeData    PersistentVolumeRestoreMode = "RestoreWithVolumeData"
	RestoreWithoutVolumeData PersistentVolumeRestoreMode = "RestoreWithoutVolumeData"
)

// VolumeDataSource says where a restored claim's data comes from.
type VolumeDataSource string

const (
	// VolumeDataAuto: the snapshot when it can be used, else vault-tier data.
	VolumeDataAuto VolumeDataSource = "Auto"
	// VolumeDataSnapshot: only the CSI snapshot (the claim is restored as before).
	VolumeDataSnapshot VolumeDataSource = "Snapshot"
	// VolumeDataVault: only the vault-tier data in the repository.
	VolumeDataVault VolumeDataSource = "Vault"
)

// VolumeDataSourceFor returns the source chosen for a source claim
// ("namespace/name"), with the defaults.
func (c *RestoreCriteria) VolumeDataSourceFor(claim string) VolumeDataSource {
	if s, ok := c.VolumeDataSources[claim]; ok && s != "" {
		return s
	}
	if c.VolumeDataSource == "" {
		return VolumeDataAuto
	}
	return c.VolumeDataSource
}

// AsksForVaultData reports whether the criteria name Vault as a volume
// data source, for all claims or for one (Auto does not count: it takes
// vault-tier data only where restore pods may run).
func (c *RestoreCriteria) AsksForVaultData() bool {
	if c.VolumeDataSource == VolumeDataVault {
		return true
	}
	for _, s := range c.VolumeDataSources {
		if s == VolumeDataVault {
			return true
		}
	}
	return false
}

// RestoreCriteria says what a restore takes from a recovery point and how it
// writes it into the target cluster.
type RestoreCriteria struct {
	IncludedNamespaces    []string `json:"includedNamespaces,omitempty"`
	ExcludedNamespaces    []string `json:"excludedNamespaces,omitempty"`
	IncludedResourceTypes []string `json:"includedResourceTypes,omitempty"`
	ExcludedResourceTypes []string `json:"excludedResourceTypes,omitempty"`
	LabelSelectors        []string `json:"labelSelectors,omitempty"`
	// IncludeClusterScopeResources restores cluster-scoped objects
	// (ClusterRoles, webhook configurations, CRDs, StorageClasses, …).
	// Default false: a restore writes namespaces and what is in them, so a
	// restore into another cluster never plants the source cluster's
	// cluster-wide objects unless asked to. Namespaces themselves are
	// always restored with their contents.
	IncludeClusterScopeResources *bool `json:"includeClusterScopeResources,omitempty"`
	// NamespaceMappings maps a source namespace to the target namespace.
	NamespaceMappings map[string]string `json:"namespaceMappings,omitempty"`
	// ConflictPolicy is Skip (default) or Patch.
	ConflictPolicy ConflictPolicy `json:"conflictPolicy,omitempty"`
	// PersistentVolumeRestoreMode defaults to RestoreWithVolumeData.
	PersistentVolumeRestoreMode PersistentVolumeRestoreMode `json:"persistentVolumeRestoreMode,omitempty"`
	// VolumeDataSource chooses where a claim's data comes from when it is
	// restored with its data: Auto (default), Snapshot or Vault
	// (docs/volumes.md). Auto takes the CSI snapshot when its retained
	// content still exists, its driver is installed in the target and no
	// storage class mapping moves the claim to another driver; else the
	// recovery point's vault-tier data for the claim, if it has some.
	VolumeDataSource VolumeDataSource `json:"volumeDataSource,omitempty"`
	// VolumeDataSources override VolumeDataSource per claim: the source
	// claim's "namespace/name" (as in the recovery point, before namespace
	// mapping) -> Auto, Snapshot or Vault.
	VolumeDataSources map[string]VolumeDataSource `json:"volumeDataSources,omitempty"`
	// StorageClassMappings rename the storage class (spec.storageClassName)
	// of restored PersistentVolumeClaims and PersistentVolumes: old -> new.
	// Both sides are storage class names (DNS subdomains).
	StorageClassMappings map[string]string `json:"storageClassMappings,omitempty"`
	// PreserveNodePorts keeps Services' nodePorts instead of letting the
	// target cluster assign new ones.
	PreserveNodePorts bool `json:"preserveNodePorts,omitempty"`
	// RestoreHookReferences name RestoreHook resources to run.
	RestoreHookReferences []NamespacedName `json:"restoreHookReferences,omitempty"`
	// ResourceModifiers rewrite objects before they are written.
	ResourceModifiers []ResourceModifierRule `json:"resourceModifiers,omitempty"`
	// DryRun reports what the restore would do and writes nothing.
	DryRun bool `json:"dryRun,omitempty"`
}

// ClusterScope reports IncludeClusterScopeResources with its default.
func (c *RestoreCriteria) ClusterScope() bool { return boolOr(c.IncludeClusterScopeResources, false) }

// Conflict reports ConflictPolicy with its default.
func (c *RestoreCriteria) Conflict() ConflictPolicy {
	if c.ConflictPolicy == "" {
		return ConflictSkip
	}
	return c.ConflictPolicy
}

// Validate checks every field's syntax.
func (c *RestoreCriteria) Validate() error {
	var errs []error
	errs = append(errs, validateNamespacePatterns("includedNamespaces", c.IncludedNamespaces)...)
	errs = append(errs, validateNamespacePatterns("excludedNamespaces", c.ExcludedNamespaces)...)
	errs = append(errs, validateTypes("includedResourceTypes", c.IncludedResourceTypes)...)
	errs = append(errs, validateTypes("excludedResourceTypes", c.ExcludedResourceTypes)...)
	if _, err := ParseLabelSelectors(c.LabelSelectors); err != nil {
		errs = append(errs, fmt.Errorf("labelSelectors: %w", err))
	}
	targets := map[string]string{}
	for from, to := range c.NamespaceMappings {
		if msgs := validation.IsDNS1123Label(from); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("namespaceMappings: source %q is not a namespace name: %s", from, strings.Join(msgs, "; ")))
		}
		if msgs := validation.IsDNS1123Label(to); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("namespaceMappings: target %q (of %q) is not a namespace name: %s", to, from, strings.Join(msgs, "; ")))
		}
		if prev, ok := targets[to]; ok {
			a, b := prev, from
			if a > b {
				a, b = b, a
			}
			errs = append(errs, fmt.Errorf("namespaceMappings: %q and %q both map to %q", a, b, to))
		}
		targets[to] = from
	}
	for _, from := range slices.Sorted(maps.Keys(c.StorageClassMappings)) {
		to := c.StorageClassMappings[from]
		if msgs := validation.IsDNS1123Subdomain(from); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("storageClassMappings: source %q is not a storage class name: %s", from, strings.Join(msgs, "; ")))
		}
		if msgs := validation.IsDNS1123Subdomain(to); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("storageClassMappings: target %q (of %q) is not a storage class name: %s", to, from, strings.Join(msgs, "; ")))
		}
	}
	switch c.ConflictPolicy {
	case "", ConflictSkip, ConflictPatch:
	default:
		errs = append(errs, fmt.Errorf("conflictPolicy: %q is not Skip or Patch", c.ConflictPolicy))
	}
	switch c.PersistentVolumeRestoreMode {
	case "", RestoreWithVolumeData, RestoreWithoutVolumeData:
	default:
		errs = append(errs, fmt.Errorf("persistentVolumeRestoreMode: %q is not RestoreWithVolumeData or RestoreWithoutVolumeData", c.PersistentVolumeRestoreMode))
	}
	validSource := func(s VolumeDataSource) bool {
		return s == "" || s == VolumeDataAuto || s == VolumeDataSnapshot || s == VolumeDataVault
	}
	if !validSource(c.VolumeDataSource) {
		errs = append(errs, fmt.Errorf("volumeDataSource: %q is not Auto, Snapshot or Vault", c.VolumeDataSource))
	}
	for _, claim := range slices.Sorted(maps.Keys(c.VolumeDataSources)) {
		ns, name, ok := strings.Cut(claim, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			errs = append(errs, fmt.Errorf("volumeDataSources: %q is not a claim: want namespace/name of the claim in the recovery point (before namespace mapping)", claim))
		}
		if s := c.VolumeDataSources[claim]; !validSource(s) {
			errs = append(errs, fmt.Errorf("volumeDataSources: %s: %q is not Auto, Snapshot or Vault", claim, s))
		}
	}
	if c.PersistentVolumeRestoreMode == RestoreWithoutVolumeData && (c.VolumeDataSource != "" || len(c.VolumeDataSources) > 0) {
		errs = append(errs, errors.New("volumeDataSource(s) choose where volume data comes from, but persistentVolumeRestoreMode is RestoreWithoutVolumeData: drop one of them"))
	}
	for i, h := range c.RestoreHookReferences {
		if h.Name == "" || h.Namespace == "" {
			errs = append(errs, fmt.Errorf("restoreHookReferences[%d]: namespace and name are required", i))
		}
	}
	for i := range c.ResourceModifiers {
		if err := c.ResourceModifiers[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("resourceModifiers[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// ResourceModifiers is the file format of `--resource-modifiers FILE`.
type ResourceModifiers struct {
	Version string                 `json:"version"` // "v1"
	Rules   []ResourceModifierRule `json:"resourceModifierRules"`
}

// Validate checks the version and every rule.
func (m *ResourceModifiers) Validate() error {
	var errs []error
	if m.Version != "" && m.Version != "v1" {
		errs = append(errs, fmt.Errorf("version: %q is not supported (want v1)", m.Version))
	}
	for i := range m.Rules {
		if err := m.Rules[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("resourceModifierRules[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// ResourceModifierRule rewrites the objects matching its conditions: first
// the JSON Patch operations (RFC 6902) in order, then the JSON merge
// patches (RFC 7386) in order.
type ResourceModifierRule struct {
	Conditions   ModifierConditions   `json:"conditions"`
	Patches      []JSONPatchOperation `json:"patches,omitempty"`
	MergePatches []json.RawMessage    `json:"mergePatches,omitempty"`
}

// ModifierConditions select objects; all given conditions must hold.
type ModifierConditions struct {
	// GroupResource is `resource.group` (`deployments.apps`), `resource` for
	// the core group (`configmaps`), or "*" for every type. Required.
	GroupResource string `json:"groupResource"`
	// ResourceNameRegex matches the whole object name (RE2).
	ResourceNameRegex string `json:"resourceNameRegex,omitempty"`
	// Namespaces the object must be in (source namespaces, before mapping).
	Namespaces []string `json:"namespaces,omitempty"`
	// LabelSelector in the same syntax as LabelSelectors.
	LabelSelector string `json:"labelSelector,omitempty"`
}

// JSONPatchOperation is one RFC 6902 operation.
type JSONPatchOperation struct {
	Op    string          `json:"op"` // add, remove, replace, move, copy, test
	Path  string          `json:"path"`
	From  string          `json:"from,omitempty"`
	Value json.RawMessage `json:"value,omitempty"`
}

var groupResourceRE = regexp.MustCompile(`^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$`)

// Validate checks the conditions and operations.
func (r *ResourceModifierRule) Validate() error {
	var errs []error
	c := r.Conditions
	if c.GroupResource == "" {
		errs = append(errs, errors.New("conditions.groupResource is required (use \"*\" for all types)"))
	} else if !groupResourceRE.MatchString(c.GroupResource) {
		errs = append(errs, fmt.Errorf("conditions.groupResource: %q is not resource.group in lower case", c.GroupResource))
	}
	if c.ResourceNameRegex != "" {
		if _, err := regexp.Compile(c.ResourceNameRegex); err != nil {
			errs = append(errs, fmt.Errorf("conditions.resourceNameRegex: %w", err))
		}
	}
	errs = append(errs, validateNamespacePatterns("conditions.namespaces", c.Namespaces)...)
	if c.LabelSelector != "" {
		if _, err := ParseLabelSelectors([]string{c.LabelSelector}); err != nil {
			errs = append(errs, fmt.Errorf("conditions.labelSelector: %w", err))
		}
	}
	if len(r.Patches) == 0 && len(r.MergePatches) == 0 {
		errs = append(errs, errors.New("no patches or mergePatches"))
	}
	for i, p := range r.Patches {
		errs = append(errs, validatePatchOp(i, p)...)
	}
	for i, m := range r.MergePatches {
		var obj map[string]any
		if err := json.Unmarshal(m, &obj); err != nil {
			errs = append(errs, fmt.Errorf("mergePatches[%d]: not a JSON object: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func validatePatchOp(i int, p JSONPatchOperation) []error {
	var errs []error
	pointer := func(field, s string) {
		if s != "" && !strings.HasPrefix(s, "/") {
			errs = append(errs, fmt.Errorf("patches[%d].%s: %q is not a JSON pointer (must start with /)", i, field, s))
		}
	}
	pointer("path", p.Path)
	switch p.Op {
	case "add", "replace", "test":
		if len(p.Value) == 0 {
			errs = append(errs, fmt.Errorf("patches[%d]: op %s needs a value", i, p.Op))
		} else if !json.Valid(p.Value) {
			errs = append(errs, fmt.Errorf("patches[%d].value: not valid JSON", i))
		}
	case "remove":
	case "move", "copy":
		if p.From == "" {
			errs = append(errs, fmt.Errorf("patches[%d]: op %s needs from", i, p.Op))
		}
		pointer("from", p.From)
	case "":
		errs = append(errs, fmt.Errorf("patches[%d].op is required", i))
	default:
		errs = append(errs, fmt.Errorf("patches[%d].op: %q is not add, remove, replace, move, copy or test", i, p.Op))
	}
	return errs
}

// ParseLabelSelectors parses label selector strings into one selector that
// requires all of them. Within a string, `;` and `,` separate requirements;
// `,` inside parentheses (set-based `env in (a,b)`) belongs to the set.
func ParseLabelSelectors(in []string) (labels.Selector, error) {
	sel := labels.Everything()
	for _, s := range in {
		for _, part := range strings.Split(s, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			p, err := labels.Parse(part)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", part, err)
			}
			reqs, _ := p.Requirements()
			sel = sel.Add(reqs...)
		}
	}
	return sel, nil
}

// TypeRef is a parsed resource type reference: `deployments.apps`,
// `Deployment`, `secrets`. Name is a resource (plural, lower case) or a kind;
// Group is empty when not given, which matches any group.
type TypeRef struct {
	Name  string
	Group string
	// GroupGiven is true when the reference named a group, even the core
	// group (written `secrets.` or `Secret.`... rarely used; `core` is accepted).
	GroupGiven bool
}

var typeNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]*$`)

// ParseTypeRef parses one resource type reference. The first dot separates
// the name from the group; `core` names the core group.
func ParseTypeRef(s string) (TypeRef, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return TypeRef{}, errors.New("empty resource type")
	}
	if s == "*" {
		return TypeRef{Name: "*"}, nil
	}
	name, group, hasGroup := strings.Cut(s, ".")
	if !typeNameRE.MatchString(name) {
		return TypeRef{}, fmt.Errorf("%q: %q is not a resource or kind name", s, name)
	}
	if hasGroup {
		if group == "core" || group == "" {
			return TypeRef{Name: name, GroupGiven: true}, nil
		}
		if msgs := validation.IsDNS1123Subdomain(group); len(msgs) > 0 {
			return TypeRef{}, fmt.Errorf("%q: group %q: %s", s, group, strings.Join(msgs, "; "))
		}
	}
	return TypeRef{Name: name, Group: group, GroupGiven: hasGroup}, nil
}

func (t TypeRef) String() string {
	if !t.GroupGiven {
		return t.Name
	}
	if t.Group == "" {
		return t.Name + ".core"
	}
	return t.Name + "." + t.Group
}

func validateTypes(field string, refs []string) []error {
	var errs []error
	for i, r := range refs {
		if _, err := ParseTypeRef(r); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
		}
	}
	return errs
}

// ValidNamespacePattern checks a namespace name or glob pattern.
func ValidNamespacePattern(p string) error {
	if p == "*" {
		return nil
	}
	if strings.ContainsAny(p, "*?[") {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%q: bad glob pattern: %w", p, err)
		}
		// The characters other than the glob syntax must still be legal.
		rest := strings.NewReplacer("*", "", "?", "", "[", "", "]", "", "^", "", "!", "").Replace(p)
		for _, r := range rest {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("%q: character %q cannot appear in a namespace name", p, r)
			}
		}
		return nil
	}
	if msgs := validation.IsDNS1123Label(p); len(msgs) > 0 {
		return fmt.Errorf("%q is not a namespace name: %s", p, strings.Join(msgs, "; "))
	}
	return nil
}

func validateNamespacePatterns(field string, pats []string) []error {
	var errs []error
	for i, p := range pats {
		if err := ValidNamespacePattern(p); err != nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w", field, i, err))
		}
	}
	return errs
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// Bool returns a pointer to b, for optional fields.
func Bool(b bool) *bool { return &b }
