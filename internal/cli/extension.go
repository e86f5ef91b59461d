package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/kube"
	"github.com/arca-backup/arca/internal/prereq"
)

func newExtensionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "extension",
		Short: "Install, inspect and run the in-cluster extension that runs backup and restore jobs",
	}
	cmd.AddCommand(newExtensionInstallCommand(), newExtensionUpdateCommand(), newExtensionShowCommand(),
		newExtensionUninstallCommand(), newExtensionManifestsCommand(), newExtensionRunCommand(), newExtensionChownStorageCommand())
	return cmd
}

// ExtensionOptions are the flags shared by install, update and manifests.
type ExtensionOptions struct {
	LocalClusterOptions
	Namespace         string
	Storage           string
	StorageSecret     string
	ReadOnly          bool
	PasswordFile      string
	Azure             struct{ Key, SAS, ConnectionString string }
	AWS               struct{ AccessKeyID, SecretAccessKey, SessionToken string }
	Image             string
	CPULimit          string
	MemoryLimit       string
	CPURequest        string
	MemoryRequest     string
	NodeSelector      map[string]string
	Tolerations       []string
	MaxConcurrentJobs int
	StorageRetry      time.Duration
	ImagePullSecrets  []string
	ExtraArgs         []string
	StorageClaim      string
	StorageClaimSize  string
	StorageClass      string
	StorageHostPath   string
	AllowVelero       bool
	Output            string
	// Wait (install, update) waits until the extension's pod is Ready,
	// naming pull errors, crash loops and unschedulable pods.
	Wait    bool
	Timeout time.Duration
	flags   *pflag.FlagSet
}

func (o *ExtensionOptions) addFlags(fs *pflag.FlagSet, cluster bool) {
	if cluster {
		o.LocalClusterOptions.AddFlags(fs)
	}
	fs.StringVarP(&o.Namespace, "namespace", "n", v1alpha1.ExtensionNamespace, "namespace of the extension, its jobs and storage locations")
	fs.StringVar(&o.Storage, "storage", "", "repository URL of the default storage location: file:///path, azure://account/container/prefix, s3://bucket/prefix?endpoint=…")
	fs.StringVar(&o.StorageSecret, "storage-secret", "", "existing Secret in the namespace with the repository password (key password) and storage credentials; otherwise "+extension.DefaultStorageSecret+" is written from the flags below")
	fs.BoolVar(&o.ReadOnly, "read-only", false, "the default storage location serves restores only")
	fs.StringVar(&o.PasswordFile, "password-file", "", "file holding the repository password (default: $"+PasswordEnv+")")
	fs.StringVar(&o.Azure.Key, "azure-account-key", "", "Azure storage account key (default: $AZURE_STORAGE_KEY)")
	fs.StringVar(&o.Azure.SAS, "azure-sas-token", "", "Azure SAS token (default: $AZURE_STORAGE_SAS_TOKEN)")
	fs.StringVar(&o.Azure.ConnectionString, "azure-connection-string", "", "Azure connection string (default: $AZURE_STORAGE_CONNECTION_STRING)")
	fs.StringVar(&o.AWS.AccessKeyID, "aws-access-key-id", "", "S3 access key (default: $AWS_ACCESS_KEY_ID)")
	fs.StringVar(&o.AWS.SecretAccessKey, "aws-secret-access-key", "", "S3 secret key (default: $AWS_SECRET_ACCESS_KEY)")
	fs.StringVar(&o.AWS.SessionToken, "aws-session-token", "", "S3 session token (default: $AWS_SESSION_TOKEN)")
	fs.StringVar(&o.Image, "image", "", "extension image, fully overridable for private registries (default "+extension.DefaultImageRepository+":<version>)")
	fs.StringVar(&o.CPULimit, "cpu-limit", "", "CPU limit of the extension (default 1)")
	fs.StringVar(&o.MemoryLimit, "memory-limit", "", "memory limit of the extension (default 512Mi)")
	fs.StringVar(&o.CPURequest, "cpu-request", "", "CPU request of the extension (default 100m)")
	fs.StringVar(&o.MemoryRequest, "memory-request", "", "memory request of the extension (default 128Mi)")
	fs.StringToStringVar(&o.NodeSelector, "node-selector", nil, "node selector of the extension pod, k=v[,k2=v2]")
	fs.StringSliceVar(&o.Tolerations, "tolerations", nil, "tolerations key[=value]:Effect[,…] (Effect: NoSchedule, PreferNoSchedule, NoExecute; key=value matches Equal, key alone Exists)")
	fs.IntVar(&o.MaxConcurrentJobs, "max-concurrent-jobs", 0, "jobs the extension runs at once (default 1)")
	fs.DurationVar(&o.StorageRetry, "storage-retry", 0, "how long one storage call is retried before the repository counts as unreachable (RepositoryUnavailable), for the extension and its data-mover and restore pods (0: the default, 10 attempts over about 3m)")
	fs.StringArrayVar(&o.ExtraArgs, "extension-arg", nil, "extra argument of `arca extension run` in the pod, e.g. --extension-arg=--log-format=json (repeatable)")
	fs.StringSliceVar(&o.ImagePullSecrets, "image-pull-secret", nil, "docker-registry Secret in the namespace for pulling --image from a private registry (repeatable)")
	fs.StringVar(&o.StorageClaim, "storage-claim", "", "file:// storage: PersistentVolumeClaim mounted at the URL's path (install creates it when missing)")
	fs.StringVar(&o.StorageClaimSize, "storage-claim-size", "", "size of the PersistentVolumeClaim install creates (default "+extension.DefaultStorageClaimSize+")")
	fs.StringVar(&o.StorageClass, "storage-class", "", "storage class of the PersistentVolumeClaim install creates (default: the cluster's default)")
	fs.StringVar(&o.StorageHostPath, "storage-host-path", "", "file:// storage: directory on the node mounted at the URL's path (single-node clusters; default on a one-node cluster: the URL's path)")
	if cluster {
		fs.BoolVar(&o.Wait, "wait", true, "wait until the extension's pod is Ready, naming image pull errors, crash loops and unschedulable pods")
		fs.DurationVar(&o.Timeout, "timeout", 3*time.Minute, "how long --wait waits")
	}
}

// secretData builds the credentials Secret from the flags and environment;
// nil when --storage-secret names an existing one.
func (o *ExtensionOptions) secretData(required bool) (map[string]string, error) {
	if o.StorageSecret != "" {
		if o.PasswordFile != "" {
			return nil, &UsageError{errors.New("--storage-secret and --password-file exclude each other: the password is in the Secret")}
		}
		return nil, nil
	}
	if !required && o.PasswordFile == "" && os.Getenv(PasswordEnv) == "" {
		return nil, nil
	}
	pw, err := (&RepoOptions{PasswordFile: o.PasswordFile}).Password()
	if err != nil {
		return nil, err
	}
	data := map[string]string{v1alpha1.SecretKeyPassword: pw}
	for key, v := range map[string]string{
		v1alpha1.SecretKeyAzureAccountKey: o.Azure.Key, v1alpha1.SecretKeyAzureSASToken: o.Azure.SAS,
		v1alpha1.SecretKeyAzureConnectionString: o.Azure.ConnectionString, v1alpha1.SecretKeyAWSAccessKeyID: o.AWS.AccessKeyID,
		v1alpha1.SecretKeyAWSSecretAccessKey: o.AWS.SecretAccessKey, v1alpha1.SecretKeyAWSSessionToken: o.AWS.SessionToken,
	} {
		if v == "" {
			v = os.Getenv(key)
		}
		if v != "" {
			data[key] = v
		}
	}
	return data, nil
}

// ParseTolerations parses key[=value]:Effect entries.
func ParseTolerations(in []string) ([]corev1.Toleration, error) {
	var out []corev1.Toleration
	for _, s := range in {
		kv, effect, ok := strings.Cut(s, ":")
		if !ok && s != "" {
			effect, kv = "", s
		}
		tol := corev1.Toleration{Effect: corev1.TaintEffect(effect)}
		switch tol.Effect {
		case "", corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			return nil, &UsageError{fmt.Errorf("--tolerations %q: effect %q is not NoSchedule, PreferNoSchedule or NoExecute", s, effect)}
		}
		if k, v, ok := strings.Cut(kv, "="); ok {
			tol.Key, tol.Value, tol.Operator = k, v, corev1.TolerationOpEqual
		} else {
			tol.Key, tol.Operator = kv, corev1.TolerationOpExists
		}
		if tol.Key == "" {
			return nil, &UsageError{fmt.Errorf("--tolerations %q: no key", s)}
		}
		out = append(out, tol)
	}
	return out, nil
}

// installOptions merges flags into base (an empty one for install and
// manifests, the current installation for update).
func (o *ExtensionOptions) installOptions(base extension.InstallOptions, secretRequired bool) (extension.InstallOptions, error) {
	set := func(name string) bool { return o.flags == nil || o.flags.Changed(name) }
	base.Namespace = o.Namespace
	base.Version = Version
	str := func(name string, dst *string, v string) {
		if set(name) && v != "" {
			*dst = v
		}
	}
	str("storage", &base.StorageURL, o.Storage)
	str("storage-secret", &base.StorageSecret, o.StorageSecret)
	str("image", &base.Image, o.Image)
	str("cpu-limit", &base.CPULimit, o.CPULimit)
	str("memory-limit", &base.MemoryLimit, o.MemoryLimit)
	str("cpu-request", &base.CPURequest, o.CPURequest)
	str("memory-request", &base.MemoryRequest, o.MemoryRequest)
	// A limit set below the request (the default, or the installed one)
	// takes the request down with it, unless the request was given too.
	lower := func(limitFlag, requestFlag string, limit, request *string) {
		if o.flags == nil || !o.flags.Changed(limitFlag) || o.flags.Changed(requestFlag) || *request == "" {
			return
		}
		l, lerr := resource.ParseQuantity(*limit)
		r, rerr := resource.ParseQuantity(*request)
		if lerr == nil && rerr == nil && r.Cmp(l) > 0 {
			*request = *limit
		}
	}
	lower("memory-limit", "memory-request", &base.MemoryLimit, &base.MemoryRequest)
	lower("cpu-limit", "cpu-request", &base.CPULimit, &base.CPURequest)
	if set("read-only") {
		base.ReadOnly = o.ReadOnly
	}
	if set("node-selector") && o.NodeSelector != nil {
		base.NodeSelector = o.NodeSelector
	}
	if set("tolerations") && o.Tolerations != nil {
		tols, err := ParseTolerations(o.Tolerations)
		if err != nil {
			return base, err
		}
		base.Tolerations = tols
	}
	if set("max-concurrent-jobs") && o.MaxConcurrentJobs > 0 {
		base.MaxConcurrentJobs = o.MaxConcurrentJobs
	}
	if set("storage-retry") {
		// Given, even as 0: update takes the extension back to the default.
		if err := extension.CheckStorageRetry(o.StorageRetry); err != nil {
			return base, &UsageError{err}
		}
		base.StorageRetry = o.StorageRetry
	}
	if set("extension-arg") && o.ExtraArgs != nil {
		base.ExtraArgs = o.ExtraArgs
	}
	if set("image-pull-secret") && o.ImagePullSecrets != nil {
		base.ImagePullSecrets = o.ImagePullSecrets
	}
	volumeNamed := o.flags != nil && (o.flags.Changed("storage-claim") || o.flags.Changed("storage-host-path"))
	if volumeNamed {
		// One volume at a time: naming one replaces the other.
		base.StorageClaim, base.StorageHostPath = "", ""
	}
	str("storage-claim", &base.StorageClaim, o.StorageClaim)
	str("storage-host-path", &base.StorageHostPath, o.StorageHostPath)
	str("storage-claim-size", &base.StorageClaimSize, o.StorageClaimSize)
	str("storage-class", &base.StorageClass, o.StorageClass)
	if base.StorageURL != "" {
		if !strings.Contains(base.StorageURL, "://") {
			return base, &UsageError{fmt.Errorf("--storage %q: want file:///path, azure://… or s3://…", base.StorageURL)}
		}
	}
	if base.StoragePath() == "" && !volumeNamed {
		// Storage moved off file:// (update): its volume goes with it.
		base.StorageClaim, base.StorageHostPath, base.StorageClaimSize, base.StorageClass = "", "", "", ""
	}
	data, err := o.secretData(secretRequired)
	if err != nil {
		return base, err
	}
	base.SecretData = data
	return base, nil
}

// --- install ---

func newExtensionInstallCommand() *cobra.Command {
	o := &ExtensionOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the extension: namespace, service account, RBAC, CRDs, storage location, credentials Secret, Deployment (server-side apply)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.flags = cmd.Flags()
			return RunExtensionInstall(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags(), true)
	cmd.Flags().BoolVar(&o.AllowVelero, "allow-velero", false, "install even when Velero is installed in the cluster")
	return cmd
}

// RunExtensionInstall runs `arca extension install`.
func RunExtensionInstall(ctx context.Context, o *ExtensionOptions, stdout io.Writer) error {
	if o.Storage == "" {
		return &UsageError{errors.New("--storage is required: the repository URL of the default storage location")}
	}
	inst, err := o.installOptions(extension.InstallOptions{}, true)
	if err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return &UsageError{err}
	}
	if !o.AllowVelero {
		v, err := prereq.DetectVelero(ctx, cfg)
		if err != nil {
			return fmt.Errorf("look for Velero: %w", err)
		}
		if v.Installed() {
			return &UsageError{fmt.Errorf("this cluster runs Velero (found %s): two backup agents in one cluster "+
				"run hooks twice and restore over each other; uninstall Velero, or pass --allow-velero to install anyway", strings.Join(v.Found, "; "))}
		}
	}
	if err := resolveVolume(ctx, cfg, &inst, stdout); err != nil {
		return err
	}
	return o.applyInstall(ctx, cfg, inst, stdout, "installed")
}

// resolveVolume settles what the cluster decides about file:// storage: on
// a one-node cluster with no volume named, the URL's path on the node
// (hostPath), so `--storage file:///var/backups/arca` works as written; a
// named claim that does not exist yet is created.
func resolveVolume(ctx context.Context, cfg *rest.Config, inst *extension.InstallOptions, stdout io.Writer) error {
	path := inst.StoragePath()
	if path == "" {
		return nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	switch {
	case inst.StorageClaim == "" && inst.StorageHostPath == "":
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("list nodes (to place file storage): %w", err)
		}
		if len(nodes.Items) != 1 {
			// Manifests names the flags; say why none was chosen.
			fmt.Fprintf(stdout, "file storage: the cluster has %d nodes, so no node directory is chosen for you\n", len(nodes.Items))
			return nil
		}
		inst.StorageHostPath = path
		fmt.Fprintf(stdout, "file storage: directory %s on node %s (hostPath, for a one-node cluster; use --storage-claim on others)\n", path, nodes.Items[0].Name)
	case inst.StorageClaim != "":
		_, err := cs.CoreV1().PersistentVolumeClaims(inst.Namespace).Get(ctx, inst.StorageClaim, metav1.GetOptions{})
		switch {
		case err == nil:
			// An existing claim is used as it is, never resized or replaced.
			inst.StorageClaimSize, inst.StorageClass = "", ""
			fmt.Fprintf(stdout, "file storage: existing PersistentVolumeClaim %s/%s\n", inst.Namespace, inst.StorageClaim)
		case apierrors.IsNotFound(err):
			if inst.StorageClaimSize == "" {
				inst.StorageClaimSize = extension.DefaultStorageClaimSize
			}
			fmt.Fprintf(stdout, "file storage: creating PersistentVolumeClaim %s/%s of %s\n", inst.Namespace, inst.StorageClaim, inst.StorageClaimSize)
		default:
			return fmt.Errorf("read PersistentVolumeClaim %s/%s: %w", inst.Namespace, inst.StorageClaim, err)
		}
	}
	return nil
}

func (o *ExtensionOptions) applyInstall(ctx context.Context, cfg *rest.Config, inst extension.InstallOptions, stdout io.Writer, verb string) error {
	objs, err := extension.Manifests(inst)
	if err != nil {
		return &UsageError{err}
	}
	if err := extension.Apply(ctx, cfg, objs); err != nil {
		return err
	}
	for _, u := range objs {
		fmt.Fprintf(stdout, "applied %s %s\n", u.GetKind(), qualifiedName(u))
	}
	fmt.Fprintf(stdout, "extension %s in namespace %s (image %s)\n", verb, inst.Namespace, extension.Images(objs)[0])
	if !o.Wait {
		return nil
	}
	fmt.Fprintf(stdout, "waiting up to %s for the extension's pod to be Ready (--wait=false skips this)\n", o.Timeout)
	r, err := extension.WaitReady(ctx, cfg, inst.Namespace, extension.WaitOptions{Timeout: o.Timeout})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "extension pod %s/%s is Ready on node %s\n", inst.Namespace, r.Pod, r.Node)
	return nil
}

func qualifiedName(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetName()
	}
	return u.GetNamespace() + "/" + u.GetName()
}

// --- update ---

func newExtensionUpdateCommand() *cobra.Command {
	o := &ExtensionOptions{}
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Change the installed extension's image, resources, placement or storage; flags not given keep their current values",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.flags = cmd.Flags()
			return RunExtensionUpdate(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags(), true)
	return cmd
}

// RunExtensionUpdate runs `arca extension update`.
func RunExtensionUpdate(ctx context.Context, o *ExtensionOptions, stdout io.Writer) error {
	cfg, err := o.config()
	if err != nil {
		return &UsageError{err}
	}
	cur, err := extension.CurrentOptions(ctx, cfg, o.Namespace)
	if err != nil {
		return err
	}
	// The image follows the CLI version unless one was set explicitly before.
	if o.flags != nil && !o.flags.Changed("image") && strings.HasPrefix(cur.Image, extension.DefaultImageRepository+":") {
		cur.Image = ""
	}
	inst, err := o.installOptions(cur, false)
	if err != nil {
		return err
	}
	if err := resolveVolume(ctx, cfg, &inst, stdout); err != nil {
		return err
	}
	return o.applyInstall(ctx, cfg, inst, stdout, "updated")
}

// --- manifests ---

func newExtensionManifestsCommand() *cobra.Command {
	o := &ExtensionOptions{}
	var imagesOnly bool
	cmd := &cobra.Command{
		Use:   "manifests",
		Short: "Print every object install applies, as YAML for GitOps, headed by the list of images used",
		Long: "Prints the objects `install` would apply. The credentials Secret is included only when a password is given\n" +
			"(--password-file or $" + PasswordEnv + "); otherwise create it yourself and pass --storage-secret.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.flags = cmd.Flags()
			return RunExtensionManifests(o, imagesOnly, cmd.OutOrStdout())
		},
	}
	o.addFlags(cmd.Flags(), false)
	cmd.Flags().BoolVar(&imagesOnly, "images", false, "print only the images used, one per line")
	return cmd
}

// RunExtensionManifests runs `arca extension manifests`.
func RunExtensionManifests(o *ExtensionOptions, imagesOnly bool, stdout io.Writer) error {
	inst, err := o.installOptions(extension.InstallOptions{}, false)
	if err != nil {
		return err
	}
	objs, err := extension.Manifests(inst)
	if err != nil {
		return &UsageError{err}
	}
	images := extension.Images(objs)
	if imagesOnly {
		for _, img := range images {
			fmt.Fprintln(stdout, img)
		}
		return nil
	}
	y, err := extension.YAML(objs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# Arca extension %s, namespace %s.\n# Images used:\n", Version, inst.Namespace)
	for _, img := range images {
		fmt.Fprintf(stdout, "#   %s\n", img)
	}
	_, err = stdout.Write(y)
	return err
}

// --- show ---

func newExtensionShowCommand() *cobra.Command {
	o := &ExtensionOptions{}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the installed version, health (deployment, or the heartbeat of an out-of-cluster runner) and storage locations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunExtensionShow(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	o.LocalClusterOptions.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", v1alpha1.ExtensionNamespace, "namespace of the extension")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

// RunExtensionShow runs `arca extension show`.
func RunExtensionShow(ctx context.Context, o *ExtensionOptions, stdout io.Writer) error {
	if err := checkOutput(o.Output); err != nil {
		return err
	}
	cfg, err := o.config()
	if err != nil {
		return &UsageError{err}
	}
	h, err := extension.Show(ctx, cfg, o.Namespace, time.Now())
	if err != nil {
		return err
	}
	if o.Output != "table" {
		return printOutput(stdout, o.Output, h, nil)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "namespace:\t%s\n", h.Namespace)
	fmt.Fprintf(tw, "installed:\t%v\n", h.Installed)
	if h.Installed {
		fmt.Fprintf(tw, "version:\t%s\n", h.Version)
		fmt.Fprintf(tw, "image:\t%s\n", h.Image)
	}
	fmt.Fprintf(tw, "deployment:\t%s\n", h.Deployment)
	if h.Heartbeat != nil {
		fmt.Fprintf(tw, "heartbeat:\t%s by %s (%s ago)\n", h.Heartbeat.UTC().Format(time.RFC3339), h.Leader, time.Since(*h.Heartbeat).Round(time.Second))
	} else {
		fmt.Fprintf(tw, "heartbeat:\tnone\n")
	}
	fmt.Fprintf(tw, "healthy:\t%v\n", h.Healthy)
	for _, p := range h.Pods {
		line := fmt.Sprintf("%s on %s, %s, ready %v, restarts %d", p.Name, orDash(p.Node), p.Phase, p.Ready, p.Restarts)
		if p.LastTermination != "" {
			line += ", last ended " + p.LastTermination
		}
		if strings.HasPrefix(p.LastTermination, "OOMKilled") {
			line += ": raise --memory-limit"
		}
		fmt.Fprintf(tw, "pod:\t%s\n", line)
	}
	fmt.Fprintf(tw, "crds:\t%d of %d\n", len(h.CRDs), extension.CRDCount())
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(h.StorageLocations) > 0 {
		fmt.Fprintln(stdout)
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STORAGE LOCATION\tPHASE\tURL\tMESSAGE")
		for _, s := range h.StorageLocations {
			url := s.URL
			if s.ReadOnly {
				url += " (read-only)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Phase, url, s.Message)
		}
		return tw.Flush()
	}
	return nil
}

// --- uninstall ---

func newExtensionUninstallCommand() *cobra.Command {
	o := &ExtensionOptions{}
	var keepCRDs bool
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the extension, its RBAC, storage locations, Secrets, namespace and (unless --keep-crds) its CRDs; the repository is untouched",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunExtensionUninstall(cmd.Context(), o, keepCRDs, cmd.OutOrStdout())
		},
	}
	o.LocalClusterOptions.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", v1alpha1.ExtensionNamespace, "namespace of the extension")
	cmd.Flags().BoolVar(&keepCRDs, "keep-crds", false, "keep the CRDs (and so BackupJob, RestoreJob and hook objects outside the namespace)")
	return cmd
}

// RunExtensionUninstall runs `arca extension uninstall`.
func RunExtensionUninstall(ctx context.Context, o *ExtensionOptions, keepCRDs bool, stdout io.Writer) error {
	cfg, err := o.config()
	if err != nil {
		return &UsageError{err}
	}
	deleted, err := extension.Uninstall(ctx, cfg, o.Namespace, keepCRDs)
	for _, d := range deleted {
		fmt.Fprintf(stdout, "deleted %s\n", d)
	}
	if err != nil {
		return err
	}
	if len(deleted) == 0 {
		fmt.Fprintf(stdout, "nothing to uninstall in namespace %s\n", o.Namespace)
	}
	return nil
}

// --- run ---

// ExtensionRunOptions are the flags of `arca extension run`.
type ExtensionRunOptions struct {
	LocalClusterOptions
	InCluster         bool
	Namespace         string
	MaxConcurrentJobs int
	MetricsAddr       string
	HealthAddr        string
	LeaderElect       bool
	InstallCRDs       bool
	StatusInterval    time.Duration
	LogFormat         string
	// The vault tier's data-mover pods (spec.vaultTier).
	MaxConcurrentMovers int
	MoverImage          string
	MoverMemoryLimit    string
	StorageRetry        time.Duration
}

func newExtensionRunCommand() *cobra.Command {
	o := &ExtensionRunOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the extension's controller (in the cluster's Deployment, or out of the cluster against --kubeconfig)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return RunExtension(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	o.LocalClusterOptions.AddFlags(fs)
	fs.BoolVar(&o.InCluster, "in-cluster", false, "use the pod's service account (the installed Deployment)")
	fs.StringVarP(&o.Namespace, "namespace", "n", v1alpha1.ExtensionNamespace, "namespace of jobs and storage locations")
	fs.IntVar(&o.MaxConcurrentJobs, "max-concurrent-jobs", 1, "jobs run at once")
	fs.StringVar(&o.MetricsAddr, "metrics-addr", ":8080", "address of /metrics (0 disables)")
	fs.StringVar(&o.HealthAddr, "health-addr", ":8081", "address of /healthz and /readyz (0 disables)")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "take the extension's Lease before running jobs, so that only one runner (pod or out-of-cluster) works; its renewals are the heartbeat `show` reports")
	fs.BoolVar(&o.InstallCRDs, "install-crds", false, "apply the CRDs first (development clusters without an installation)")
	fs.DurationVar(&o.StatusInterval, "status-interval", 2*time.Second, "how often a running job's status is written")
	fs.StringVar(&o.LogFormat, "log-format", "text", "log format: text or json")
	fs.IntVar(&o.MaxConcurrentMovers, "max-concurrent-movers", 2, "data-mover pods a vault-tier backup runs at once (one per volume)")
	fs.StringVar(&o.MoverImage, "mover-image", "", "image of the data-mover pods, which move volume data to and from the vault tier (default: the extension pod's own image; required out of the cluster)")
	fs.StringVar(&o.MoverMemoryLimit, "mover-memory-limit", "256Mi", "memory limit of each data-mover pod")
	fs.DurationVar(&o.StorageRetry, "storage-retry", 0, "how long one storage call is retried before the repository counts as unreachable (RepositoryUnavailable), for the extension and its data-mover and restore pods (0: the default, 10 attempts over about 3m)")
	return cmd
}

// RunExtension runs `arca extension run` until ctx ends.
func RunExtension(ctx context.Context, o *ExtensionRunOptions, stderr io.Writer) error {
	var h slog.Handler
	switch o.LogFormat {
	case "text":
		h = slog.NewTextHandler(stderr, nil)
	case "json":
		h = slog.NewJSONHandler(stderr, nil)
	default:
		return &UsageError{fmt.Errorf("--log-format %q: want text or json", o.LogFormat)}
	}
	log := logr.FromSlogHandler(h)
	ctrllog.SetLogger(log)
	var cfg *rest.Config
	var err error
	if o.InCluster {
		cfg, err = rest.InClusterConfig()
		if err == nil {
			cfg = kube.WithRateLimits(cfg, o.QPS, o.Burst)
		}
	} else {
		cfg, err = o.config()
	}
	if err != nil {
		return &UsageError{err}
	}
	if o.InstallCRDs {
		if err := extension.InstallCRDs(ctx, cfg); err != nil {
			return err
		}
	} else if err := extension.CheckCRDs(cfg); err != nil {
		return err
	}
	log.Info("extension starting", "version", Version, "namespace", o.Namespace, "server", cfg.Host, "maxConcurrentJobs", o.MaxConcurrentJobs)
	return extension.Run(ctx, cfg, extension.Options{
		Namespace: o.Namespace, MaxConcurrentJobs: o.MaxConcurrentJobs, StatusInterval: o.StatusInterval,
		MetricsAddr: o.MetricsAddr, ProbeAddr: o.HealthAddr, LeaderElection: o.LeaderElect, Log: log, Version: Version,
		PodName: os.Getenv(extension.EnvPodName), PodNamespace: os.Getenv(extension.EnvPodNamespace),
		MaxConcurrentMovers: o.MaxConcurrentMovers, DataMoverImage: o.MoverImage, MoverMemoryLimit: o.MoverMemoryLimit,
		StorageRetry: o.StorageRetry,
	})
}

// --- chown-storage (the Deployment's init container) ---

func newExtensionChownStorageCommand() *cobra.Command {
	var uid int
	cmd := &cobra.Command{
		Use:   "chown-storage PATH",
		Short: "Give PATH and everything under it to --uid (the extension pod's init container, run with CAP_CHOWN alone)",
		Example: `  # what the Deployment's init container runs on the file storage volume
  arca extension chown-storage /var/backups/arca --uid 65532`,
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := ChownTree(args[0], uid)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d entries given to uid %d\n", args[0], n, uid)
			return nil
		},
	}
	cmd.Flags().IntVar(&uid, "uid", extension.RunAsUser, "user (and group) to own the tree")
	return cmd
}

// ChownTree gives root and every entry under it that another user owns to
// uid:uid (symlinks themselves, not their targets), returning how many it
// changed. A new hostPath directory is root's; the extension runs as
// extension.RunAsUser. A directory uid owns already is the extension's, and
// so is everything in it: it is not entered (with CAP_CHOWN alone, root
// cannot read the extension's 0700 directories, and need not).
func ChownTree(root string, uid int) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == uid {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if err := os.Lchown(p, uid, uid); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
