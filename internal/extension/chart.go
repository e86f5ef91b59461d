package extension

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// The Helm chart charts/arca-extension is generated from Manifests, the
// source `arca extension install` and `manifests` use: Manifests renders
// every object once with marker values in place of the options, and each
// marker becomes the chart value that sets that option. Only the shape of
// the optional parts (a field present or not, claim or hostPath) is written
// here as template text; TestChartAgreesWithManifests renders the chart with
// Helm's engine for several value sets and compares it with Manifests.
// Regenerate with `make chart` (go run ./hack/genchart).

// ChartDir is the chart's directory in the repository.
const ChartDir = "charts/arca-extension"

// Markers: upper-case letters and digits only, so YAML prints them bare;
// resource quantities need numbers, so those are unlikely ones.
const (
	mkNamespace = "ARCA0NAMESPACE"
	mkVersion   = "ARCA0VERSION"
	mkImage     = "ARCA0IMAGE"
	mkSecret    = "ARCA0SECRET"
	mkURL       = "ARCA0URL"
	mkClaim     = "ARCA0CLAIM"
	mkHostPath  = "/ARCA0HOSTPATH"
	mkPath      = "/ARCA0PATH"
	mkClass     = "ARCA0CLASS"
	mkExtraArgs = "ARCA0EXTRAARGS"
	mkJobs      = 987654321
	mkCPUReq    = "7771m"
	mkCPULim    = "7772m"
	mkMemReq    = "7773Mi"
	mkMemLim    = "7774Mi"
	mkSize      = "7775Gi"
	// mkRetry is an unlikely duration: its argument prints as
	// --storage-retry=2h9m36s.
	mkRetry = 7776 * time.Second
	// mkField marks a field whose whole value is replaced by template text.
	mkField = "ARCA0FIELD"
)

// chartOptions are the install options with a marker for every value.
func chartOptions(claim bool) InstallOptions {
	o := InstallOptions{
		Namespace: mkNamespace, Version: mkVersion, Image: mkImage,
		StorageURL: "file://" + mkPath, StorageSecret: mkSecret, ReadOnly: true,
		SecretData: map[string]string{"k": "v"},
		CPURequest: mkCPUReq, CPULimit: mkCPULim, MemoryRequest: mkMemReq, MemoryLimit: mkMemLim,
		NodeSelector: map[string]string{"k": "v"}, ImagePullSecrets: []string{"s"},
		MaxConcurrentJobs: mkJobs, ExtraArgs: []string{mkExtraArgs}, StorageRetry: mkRetry,
	}
	o.Tolerations = nil
	if claim {
		o.StorageClaim, o.StorageClaimSize, o.StorageClass = mkClaim, mkSize, mkClass
	} else {
		o.StorageHostPath = mkHostPath
	}
	return o
}

// scalar markers and the template text that replaces them.
var chartScalars = []struct{ marker, tmpl string }{
	{mkNamespace, "{{ .Release.Namespace | quote }}"},
	{mkVersion, "{{ .Chart.AppVersion | quote }}"},
	{mkImage, `{{ .Values.image | default (printf "%s:%s" "` + DefaultImageRepository + `" .Chart.AppVersion) | quote }}`},
	{mkSecret, "{{ .Values.storage.secret | quote }}"},
	{mkClaim, "{{ .Values.storage.claim | quote }}"},
	{mkHostPath, "{{ .Values.storage.hostPath | quote }}"},
	{mkPath, "{{ $path | quote }}"},
	{mkClass, "{{ .Values.storage.storageClass | quote }}"},
	{fmt.Sprint(mkJobs), "{{ .Values.maxConcurrentJobs | int }}"},
	{mkCPUReq, "{{ .Values.resources.requests.cpu | quote }}"},
	{mkCPULim, "{{ .Values.resources.limits.cpu | quote }}"},
	{mkMemReq, "{{ .Values.resources.requests.memory | quote }}"},
	{mkMemLim, "{{ .Values.resources.limits.memory | quote }}"},
	{mkSize, "{{ .Values.storage.claimSize | quote }}"},
	{"file://" + mkPath, "{{ .Values.storage.url | quote }}"},
}

// chartPrelude computes $path (the directory of a file:// storage URL) and
// refuses what Manifests refuses (VolumeError).
const chartPrelude = `{{- $path := "" }}
{{- if hasPrefix "file://" (.Values.storage.url | default "") }}
{{- $path = clean (trimPrefix "file://" .Values.storage.url) }}
{{- end }}
{{- if and .Values.storage.claim .Values.storage.hostPath }}
{{- fail "storage.claim and storage.hostPath exclude each other: the repository is on one volume" }}
{{- end }}
{{- if and (not $path) (or .Values.storage.claim .Values.storage.hostPath) }}
{{- fail "storage.claim and storage.hostPath hold file:// storage; storage.url is not a file:// URL" }}
{{- end }}
{{- if and $path (not .Values.storage.claim) (not .Values.storage.hostPath) }}
{{- fail (printf "%s: the extension runs in a pod, which sees %s only through a volume: set storage.claim (a PersistentVolumeClaim; storage.claimSize creates it) or, on a single-node cluster, storage.hostPath (a directory on the node); or use azure:// or s3:// storage (FileStorageNeedsVolume)" .Values.storage.url $path) }}
{{- end }}
`

// chartDeploymentChecks refuses values that Manifests cannot take either,
// naming the value: a storageRetry that is no Go duration (a number
// without a unit, a negative one) would crash the extension at start.
const chartDeploymentChecks = `{{- with .Values.storageRetry }}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$" (toString .)) }}
{{- fail (printf "storageRetry %v: want a duration with a unit, such as 30s or 5m (--storage-retry); empty for the default" .) }}
{{- end }}
{{- end }}
`

// ChartValues is values.yaml: the defaults of InstallOptions.
func ChartValues() []byte {
	d := InstallOptions{}
	d.defaults()
	return []byte(fmt.Sprintf(`# Values of the Arca extension chart. Every value matches a flag of
# `+"`arca extension install`"+` (docs/extension.md); the chart is generated from
# the same source as `+"`arca extension manifests`"+`.

# image: the extension image (--image); empty: %s:<appVersion>.
image: ""
# imagePullSecrets: docker-registry Secrets in the release namespace (--image-pull-secret).
imagePullSecrets: []
resources:
  requests:
    cpu: %s
    memory: %s
  limits:
    cpu: %q
    # --memory-limit: an OOMKilled extension fails its job with ExtensionOOMKilled.
    memory: %s
nodeSelector: {}
tolerations: []
# maxConcurrentJobs: jobs run at once (--max-concurrent-jobs).
maxConcurrentJobs: 1
# storageRetry: how long one storage call is retried before the repository
# counts as unreachable (RepositoryUnavailable), for the extension and its
# data-mover and restore pods (--storage-retry), e.g. 30s or 5m; empty: the
# default, 10 attempts over about 3m.
storageRetry: ""
# extraArgs: more arguments of `+"`arca extension run`"+` (--extension-arg), e.g. --log-format=json.
extraArgs: []
storage:
  # url: the repository of StorageLocation "default" (--storage); empty: none.
  url: ""
  readOnly: false
  # secret: the Secret with the repository password and storage credentials (--storage-secret).
  secret: %s
  # credentials: when set, the chart writes the Secret with these keys
  # (password, AZURE_STORAGE_KEY, AWS_ACCESS_KEY_ID, …).
  credentials: {}
  # file:// storage needs a volume at the URL's path: a PersistentVolumeClaim
  # (claim; claimSize makes the chart create it) or a node directory
  # (hostPath, single-node clusters).
  claim: ""
  claimSize: ""
  storageClass: ""
  hostPath: ""
`, DefaultImageRepository, d.CPURequest, d.MemoryRequest, d.CPULimit, d.MemoryLimit, d.StorageSecret))
}

// ChartFiles returns the chart's files by path inside the chart directory.
func ChartFiles(version string) (map[string][]byte, error) {
	files := map[string][]byte{
		"Chart.yaml": []byte(fmt.Sprintf(`apiVersion: v2
name: arca-extension
description: Arca's in-cluster extension, which runs BackupJobs and RestoreJobs (generated by make chart from the source of arca extension manifests)
type: application
version: %s
appVersion: %q
home: https://github.com/arca-backup/arca
`, chartVersion(version), version)),
		"values.yaml": ChartValues(),
		".helmignore": []byte("# generated by make chart\n*.orig\n"),
	}
	hostObjs, err := Manifests(chartOptions(false))
	if err != nil {
		return nil, err
	}
	claimObjs, err := Manifests(chartOptions(true))
	if err != nil {
		return nil, err
	}
	// CRDs go in crds/, which Helm installs before the templates (a
	// StorageLocation can be created only once its CRD is served) and does
	// not template: they carry the chart's version as a fixed label.
	crdObjs, err := Manifests(InstallOptions{Version: version})
	if err != nil {
		return nil, err
	}
	for _, u := range crdObjs {
		if u.GetKind() == "CustomResourceDefinition" {
			y, err := yaml.Marshal(u.Object)
			if err != nil {
				return nil, err
			}
			files["crds/"+u.GetName()+".yaml"] = append([]byte("# generated by make chart from config/crd; do not edit\n"), y...)
		}
	}
	var rbac []string
	for _, u := range hostObjs {
		var text string
		var err error
		switch u.GetKind() {
		case "Namespace", "CustomResourceDefinition":
			// The release namespace (helm install -n NS --create-namespace);
			// CRDs are in crds/.
			continue
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			if text, err = templateOf(u, nil); err != nil {
				return nil, err
			}
			rbac = append(rbac, text)
			continue
		case "Secret":
			text, err = templateOf(u, []fieldTemplate{{path: []string{"stringData"},
				text: "stringData:\n  {{- toYaml .Values.storage.credentials | nindent NI }}"}})
			text = "{{- if .Values.storage.credentials }}\n" + text + "{{- end }}\n"
			files["templates/secret.yaml"] = []byte(text)
		case "StorageLocation":
			text, err = templateOf(u, []fieldTemplate{{path: []string{"spec", "readOnly"},
				text: "{{- if .Values.storage.readOnly }}\nreadOnly: true\n{{- end }}"}})
			text = "{{- if .Values.storage.url }}\n" + text + "{{- end }}\n"
			files["templates/storagelocation.yaml"] = []byte(text)
		case "Deployment":
			text, err = deploymentTemplate(u, claimObjs)
			files["templates/deployment.yaml"] = []byte(chartPrelude + chartDeploymentChecks + text)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, u := range claimObjs {
		if u.GetKind() == "PersistentVolumeClaim" {
			text, err := templateOf(u, []fieldTemplate{{path: []string{"spec", "storageClassName"},
				text: "{{- with .Values.storage.storageClass }}\nstorageClassName: {{ . | quote }}\n{{- end }}"}})
			if err != nil {
				return nil, err
			}
			files["templates/pvc.yaml"] = []byte(chartPrelude + "{{- if and $path .Values.storage.claim .Values.storage.claimSize }}\n" + text + "{{- end }}\n")
		}
	}
	files["templates/rbac.yaml"] = []byte(strings.Join(rbac, "---\n"))
	return files, nil
}

// chartVersion is a SemVer chart version for an arca version ("dev" and
// other non-SemVer builds become 0.0.0-<version>).
func chartVersion(v string) string {
	if regexp.MustCompile(`^v?\d+\.\d+\.\d+([-+].*)?$`).MatchString(v) {
		return strings.TrimPrefix(v, "v")
	}
	return "0.0.0-" + regexp.MustCompile(`[^0-9A-Za-z-]`).ReplaceAllString(v, "-")
}

// fieldTemplate replaces the field at path (its key line and value) by
// text, indented where the field was; "NI" in text is that indentation
// plus two (for nindent). A field inside a list is marked beforehand with
// marker instead of a path.
type fieldTemplate struct {
	path   []string
	marker string
	text   string
}

// templateOf renders u as YAML with every marker replaced by its template
// and each field of fields replaced by its text.
func templateOf(u *unstructured.Unstructured, fields []fieldTemplate) (string, error) {
	obj := u.DeepCopy()
	marks := make([]string, len(fields))
	for i, f := range fields {
		marks[i] = f.marker
		if f.marker != "" {
			continue
		}
		marks[i] = fmt.Sprintf("%s%c", mkField, 'A'+i)
		if err := unstructured.SetNestedField(obj.Object, marks[i], f.path...); err != nil {
			return "", fmt.Errorf("%s: %v", strings.Join(f.path, "."), err)
		}
	}
	y, err := yaml.Marshal(obj.Object)
	if err != nil {
		return "", err
	}
	lines := strings.Split(string(y), "\n")
	for i, f := range fields {
		mark := marks[i]
		found := false
		for j, l := range lines {
			if strings.HasSuffix(l, ": "+mark) {
				indent := l[:len(l)-len(strings.TrimLeft(l, " "))]
				var out []string
				for _, tl := range strings.Split(strings.ReplaceAll(f.text, "NI", fmt.Sprint(len(indent)+2)), "\n") {
					out = append(out, indent+tl)
				}
				lines[j] = strings.Join(out, "\n")
				found = true
			}
		}
		if !found {
			return "", fmt.Errorf("field %s%s not found in the YAML of %s", strings.Join(f.path, "."), f.marker, u.GetKind())
		}
	}
	text := strings.Join(lines, "\n")
	// List items: the extra arguments of `arca extension run`.
	text = regexp.MustCompile(`(?m)^( *)- `+mkExtraArgs+`$`).ReplaceAllString(text,
		"${1}{{- range .Values.extraArgs }}\n${1}- {{ . | quote }}\n${1}{{- end }}")
	// The storage retry budget: an argument only when the value is set.
	retryItem := "${1}{{- with .Values.storageRetry }}\n${1}- {{ printf \"" + storageRetryArg + "%v\" . | quote }}\n${1}{{- end }}"
	text = regexp.MustCompile(`(?m)^( *)- `+regexp.QuoteMeta(storageRetryArg+mkRetry.String())+`$`).ReplaceAllString(text, retryItem)
	// Longest markers first: "file:///ARCA0PATH" before "/ARCA0PATH".
	scalars := append([]struct{ marker, tmpl string }{}, chartScalars...)
	sort.SliceStable(scalars, func(a, b int) bool { return len(scalars[a].marker) > len(scalars[b].marker) })
	for _, s := range scalars {
		text = regexp.MustCompile(`(?m)([ =])`+regexp.QuoteMeta(s.marker)+`$`).ReplaceAllString(text, "${1}"+strings.ReplaceAll(s.tmpl, "$", "$$"))
	}
	if m := regexp.MustCompile(`ARCA0[A-Z]+|7775Gi|777[1-4]m|777[34]Mi|` + fmt.Sprint(mkJobs) + `|` + mkRetry.String()).FindString(text); m != "" {
		return "", fmt.Errorf("marker %s left in the template of %s", m, u.GetKind())
	}
	return text, nil
}

// deploymentTemplate is the Deployment with its optional parts as
// conditions: node selector, tolerations, pull secrets, and the storage
// volume (a claim or a node directory), its mount and the init container
// that owns it, present only for file:// storage.
func deploymentTemplate(host *unstructured.Unstructured, claimObjs []*unstructured.Unstructured) (string, error) {
	var claimDep *unstructured.Unstructured
	for _, u := range claimObjs {
		if u.GetKind() == "Deployment" {
			claimDep = u
		}
	}
	pod := []string{"spec", "template", "spec"}
	at := func(path ...string) []string { return append(append([]string{}, pod...), path...) }
	volumeYAML := func(u *unstructured.Unstructured) (string, error) {
		vs, _, err := unstructured.NestedSlice(u.Object, at("volumes")...)
		if err != nil {
			return "", err
		}
		y, err := yaml.Marshal(map[string]any{"volumes": vs})
		return strings.TrimSuffix(string(y), "\n"), err
	}
	hostVol, err := volumeYAML(host)
	if err != nil {
		return "", err
	}
	claimVol, err := volumeYAML(claimDep)
	if err != nil {
		return "", err
	}
	containers, _, err := unstructured.NestedSlice(host.Object, at("containers")...)
	if err != nil || len(containers) != 1 {
		return "", fmt.Errorf("deployment containers: %v", err)
	}
	c := containers[0].(map[string]any)
	mounts, err := yaml.Marshal(map[string]any{"volumeMounts": c["volumeMounts"]})
	if err != nil {
		return "", err
	}
	c["volumeMounts"] = mkField + "M"
	if err := unstructured.SetNestedSlice(host.Object, containers, at("containers")...); err != nil {
		return "", err
	}
	inits, _, err := unstructured.NestedSlice(host.Object, at("initContainers")...)
	if err != nil {
		return "", err
	}
	initYAML, err := yaml.Marshal(map[string]any{"initContainers": inits})
	if err != nil {
		return "", err
	}
	return templateOf(host, []fieldTemplate{
		{path: at("nodeSelector"), text: "{{- with .Values.nodeSelector }}\nnodeSelector:\n  {{- toYaml . | nindent NI }}\n{{- end }}"},
		{path: at("tolerations"), text: "{{- with .Values.tolerations }}\ntolerations:\n  {{- toYaml . | nindent NI }}\n{{- end }}"},
		{path: at("imagePullSecrets"), text: "{{- with .Values.imagePullSecrets }}\nimagePullSecrets:\n{{- range . }}\n- name: {{ . | quote }}\n{{- end }}\n{{- end }}"},
		{path: at("volumes"), text: "{{- if and $path .Values.storage.claim }}\n" + claimVol + "\n{{- else if $path }}\n" + hostVol + "\n{{- end }}"},
		{path: at("initContainers"), text: "{{- if $path }}\n" + strings.TrimSuffix(string(initYAML), "\n") + "\n{{- end }}"},
		{marker: mkField + "M", text: "{{- if $path }}\n" + strings.TrimSuffix(string(mounts), "\n") + "\n{{- end }}"},
	})
}
