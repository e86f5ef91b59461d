package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/testenv"
)

const (
	clusterName  = "demo"
	vaultName    = "default"
	policyName   = "daily"
	instanceName = "shop"
)

type step struct {
	name string
	took time.Duration
}

// demo holds what the steps share.
type demo struct {
	ctx        context.Context
	t          testenv.T
	arca, work string
	env        []string
	steps      []step
	logs       []string // background processes' log files, shown on failure
	explicit   bool     // one command per step instead of arca quickstart
	inCluster  bool     // the extension runs as a pod on the node
	extImage   string   // the extension image's reference in the cluster's registry
	cfg        *rest.Config
}

// options are the demo's flags.
type options struct {
	arca, work, image string
	local, explicit   bool
	inCluster         bool
}

func (d *demo) timed(name string, f func() error) error {
	fmt.Printf("==> %s\n", name)
	start := time.Now()
	err := f()
	d.steps = append(d.steps, step{name, time.Since(start)})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// arcaRun runs the arca binary, echoing the command line; stdout is
// returned, stderr passes through.
func (d *demo) arcaRun(args ...string) ([]byte, error) {
	cmd := exec.CommandContext(d.ctx, d.arca, args...)
	cmd.Env = d.env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	fmt.Printf("    $ arca %s\n", strings.Join(args, " "))
	err := cmd.Run()
	return out.Bytes(), err
}

// arcaShow runs arca and prints its stdout indented.
func (d *demo) arcaShow(args ...string) error {
	out, err := d.arcaRun(args...)
	fmt.Print(indent(out))
	return err
}

// background starts a long-running arca process with its output in a log
// file under the work directory; cleanup stops it with SIGTERM (SIGKILL
// after 10 s) and waits for it.
func (d *demo) background(name string, args ...string) error {
	logPath := filepath.Join(d.work, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.arca, args...)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = f, f
	fmt.Printf("    $ arca %s &   (log: %s)\n", strings.Join(args, " "), logPath)
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	d.logs = append(d.logs, logPath)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	d.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return nil
}

// showLogs prints the end of each background process's log.
func (d *demo) showLogs() {
	for _, p := range d.logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		fmt.Fprintf(os.Stderr, "--- last lines of %s\n%s\n", p, strings.Join(lines, "\n"))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func run(t testenv.T, o options) error {
	d := &demo{ctx: context.Background(), t: t, explicit: o.explicit, inCluster: o.inCluster}
	err := d.run(o.arca, o.work, o.image, o.local)
	if err != nil {
		d.showLogs()
	}
	return err
}

func (d *demo) run(arca, work, imageArchive string, local bool) error {
	ctx := d.ctx
	var err error
	if d.arca, err = filepath.Abs(arca); err != nil {
		return err
	}
	if work == "" {
		if work, err = os.MkdirTemp("", "arca-demo-"); err != nil {
			return err
		}
		d.t.Cleanup(func() { os.RemoveAll(work) })
	}
	d.work = work
	repoURL := "file://" + filepath.Join(work, "repository")
	d.env = append(os.Environ(), "ARCA_PASSWORD=demo-password-change-me")

	var cp *testenv.ControlPlane
	var csi *testenv.CSI
	clusterStep := "start a local cluster (etcd, kube-apiserver, kube-controller-manager, CSI snapshot stack)"
	if d.inCluster {
		clusterStep = "start a local cluster with a real node (kubelet, containerd, kube-proxy, kube-scheduler) and a CSI driver that keeps real bytes"
	}
	if err := d.timed(clusterStep, func() error {
		if !d.inCluster {
			cp = testenv.StartControlPlane(d.t, testenv.ControlPlaneOptions{})
			csi = testenv.StartCSI(d.t, cp)
			return nil
		}
		cp = testenv.StartControlPlane(d.t, testenv.ControlPlaneOptions{Nodes: 1})
		csi = testenv.StartHostPathCSI(d.t, cp)
		for _, n := range cp.Nodes {
			fmt.Printf("    node %s (%s) Ready in %s\n", n.Name, n.IP, cp.StartupTimes["node "+n.Name].Round(time.Millisecond))
		}
		return nil
	}); err != nil {
		return err
	}
	kubeconfig := cp.KubeconfigFile(d.t)
	d.cfg = cp.Config()
	cs, err := kubernetes.NewForConfig(cp.Config())
	if err != nil {
		return err
	}

	var before *app
	var sumsBefore string
	if d.inCluster {
		if err := d.timed("push the extension image `make image` built to the cluster's registry", func() error {
			d.extImage, err = pushExtensionImage(d.t, cp, imageArchive)
			return err
		}); err != nil {
			return err
		}
	}
	if err := d.timed("deploy the sample application into namespace "+ns, func() error {
		if d.inCluster {
			if err := deployDataApp(ctx, cs, csi.StorageClass, testenv.AppImage(d.t, cp.Registry)); err != nil {
				return err
			}
			var pod *corev1.Pod
			if sumsBefore, pod, err = volumeChecksums(ctx, cp.Config(), cs); err != nil {
				return err
			}
			fmt.Printf("    pod %s on node %s wrote %d files into PVC shop-data\n", pod.Name, pod.Spec.NodeName, strings.Count(sumsBefore, "\n"))
		} else if err := deploy(ctx, cs, csi.StorageClass); err != nil {
			return err
		}
		before, err = capture(ctx, cs)
		return err
	}); err != nil {
		return err
	}

	var restore func() error
	if local {
		restore, err = d.localBackup(kubeconfig, repoURL)
	} else {
		restore, err = d.vaultBackup(kubeconfig, repoURL)
	}
	if err != nil {
		return err
	}

	if err := d.timed("delete the application (namespace "+ns+") and wait until it is gone", func() error {
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
			return err
		}
		return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	}); err != nil {
		return err
	}

	if err := restore(); err != nil {
		return err
	}

	if err := d.timed("verify that everything is back", func() error {
		return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			after, err := capture(ctx, cs)
			if err != nil {
				return false, nil
			}
			if diff := before.diff(after); diff != "" {
				fmt.Printf("    not yet: %s\n", diff)
				return false, nil
			}
			return true, nil
		})
	}); err != nil {
		return err
	}

	if !d.inCluster {
		if err := d.timed("verify that the PVC's data came back from its CSI snapshot", func() error {
			return verifyVolumeFromSnapshot(ctx, cp.Config(), cs, csi)
		}); err != nil {
			return err
		}
		d.report(local)
		return nil
	}
	var sumsAfter string
	if err := d.timed("verify every byte of the volume in the restored pod (sha256 of each file)", func() error {
		var pod *corev1.Pod
		if sumsAfter, pod, err = volumeChecksums(ctx, cp.Config(), cs); err != nil {
			return err
		}
		if sumsAfter != sumsBefore {
			return fmt.Errorf("the restored volume differs:\nbefore:\n%s\nafter:\n%s", sumsBefore, sumsAfter)
		}
		pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "shop-data", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if src := pvc.Spec.DataSource; src == nil || src.Kind != "VolumeSnapshot" {
			return fmt.Errorf("restored PVC's dataSource is %+v, want a VolumeSnapshot", src)
		}
		fmt.Printf("    restored pod %s on node %s: %d files, all checksums equal; PVC made from VolumeSnapshot %s\n",
			pod.Name, pod.Spec.NodeName, strings.Count(sumsAfter, "\n"), pvc.Spec.DataSource.Name)
		return nil
	}); err != nil {
		return err
	}
	if err := d.timed("check the restore post hook ran in the restored pod", func() error {
		h, err := restoreHookResult(ctx, d.cfg)
		if err != nil {
			return err
		}
		fmt.Printf("    hook %s ran in restored pod %s once it was Ready (exit 0, %s): %s\n", h.Hook, h.Pod, h.Duration.Round(time.Millisecond), strings.TrimSpace(strings.ReplaceAll(h.Stdout, "\n", "; ")))
		return nil
	}); err != nil {
		return err
	}
	ext, err := extensionPod(ctx, cs)
	if err != nil {
		return err
	}
	d.report(local)
	fmt.Printf("The extension ran as pod %s/%s on node %s (image %s).\n", ext.Namespace, ext.Name, ext.Spec.NodeName, ext.Spec.Containers[0].Image)
	fmt.Printf("Checksums compared (before = after):\n%s\n", indent([]byte(sumsAfter)))
	return nil
}

// localBackup backs up with `arca local backup` and returns the matching
// restore step.
func (d *demo) localBackup(kubeconfig, repoURL string) (func() error, error) {
	var rpID string
	err := d.timed("back up the namespace with `arca local backup`", func() error {
		out, err := d.arcaRun("local", "backup", "--kubeconfig", kubeconfig, "--repo", repoURL,
			"--include-namespaces", ns, "--output", "json")
		if err != nil {
			return err
		}
		var res struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.ID == "" {
			return fmt.Errorf("backup printed no recovery point id (%v): %s", err, out)
		}
		rpID = res.ID
		fmt.Printf("    recovery point %s\n", rpID)
		return nil
	})
	return func() error {
		return d.timed("restore it with `arca local restore`", func() error {
			return d.arcaShow("local", "restore", "--kubeconfig", kubeconfig, "--repo", repoURL, "--recovery-point", rpID)
		})
	}, err
}

// vaultBackup sets up the vault, the extension and protection, takes an
// on-demand backup through the vault, and returns the restore step.
func (d *demo) vaultBackup(kubeconfig, repoURL string) (func() error, error) {
	dataDir := filepath.Join(d.work, "vault")
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	vaultURL := fmt.Sprintf("https://127.0.0.1:%d", port)

	if err := d.timed("initialise a vault on SQLite and serve it on "+vaultURL, func() error {
		out, err := d.arcaRun("vault", "init", "--data-dir", dataDir)
		if err != nil {
			return err
		}
		token := adminToken(out)
		if token == "" {
			return fmt.Errorf("vault init printed no admin token:\n%s", out)
		}
		fmt.Printf("    admin token %s…\n", token[:min(8, len(token))])
		d.env = append(d.env, "ARCA_VAULT_URL="+vaultURL, "ARCA_TOKEN="+token,
			"ARCA_CA_CERT="+filepath.Join(dataDir, "tls", "tls.crt"), "ARCA_VAULT="+vaultName)
		if err := d.background("vault", "vault", "serve", "--data-dir", dataDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-format", "text"); err != nil {
			return err
		}
		// Ready when the API answers.
		deadline := time.Now().Add(30 * time.Second)
		for {
			cmd := exec.CommandContext(d.ctx, d.arca, "vault", "list")
			cmd.Env = d.env
			if err := cmd.Run(); err == nil {
				return nil
			}
			if time.Now().After(deadline) {
				return errors.New("the vault did not answer within 30s")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}); err != nil {
		return nil, err
	}

	if d.explicit {
		if err := d.explicitSetup(kubeconfig, repoURL); err != nil {
			return nil, err
		}
	} else if err := d.quickstart(kubeconfig, repoURL); err != nil {
		return nil, err
	}

	var rpID string
	if err := d.timed("find the recovery point", func() error {
		out, err := d.arcaRun("recovery-point", "list", "--instance", instanceName, "--output", "json")
		if err != nil {
			return err
		}
		var rps struct {
			Items []struct {
				ID    string `json:"id"`
				Items int    `json:"items"`
			} `json:"items"`
		}
		if err := json.Unmarshal(out, &rps); err != nil || len(rps.Items) == 0 || rps.Items[len(rps.Items)-1].ID == "" {
			return fmt.Errorf("no recovery point listed (%v): %s", err, out)
		}
		last := rps.Items[len(rps.Items)-1]
		rpID = last.ID
		fmt.Printf("    recovery point %s (%d items)\n", rpID, last.Items)
		return nil
	}); err != nil {
		return nil, err
	}

	restoreArgs := []string{"restore", "start", "--recovery-point", rpID, "--target-cluster", clusterName, "--wait"}
	if d.inCluster {
		if err := d.timed("create a RestoreHook: a smoke test to run in the restored pod once it is Ready", func() error {
			criteria, err := createRestoreHook(d.ctx, d.cfg, d.work)
			if err != nil {
				return err
			}
			fmt.Printf("    RestoreHook %s/%s; restore criteria %s references it\n", v1alpha1.ExtensionNamespace, restoreHookName, criteria)
			restoreArgs = append(restoreArgs, "--criteria", criteria)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return func() error {
		return d.timed("restore it through the vault with `arca restore start --wait`", func() error {
			return d.arcaShow(restoreArgs...)
		})
	}, nil
}

// adminToken finds the token in `arca vault init`'s output: the first
// non-empty line after "Admin token".
func adminToken(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	seen := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "Admin token") {
			seen = true
			continue
		}
		if seen && line != "" {
			return line
		}
	}
	return ""
}

func (d *demo) report(local bool) {
	path := "the vault, the extension and the repository"
	if local {
		path = "`arca local` and the repository"
	}
	fmt.Printf("\nArca demo: backup and restore of namespace %s through %s verified.\n\n", ns, path)
	var total time.Duration
	for _, s := range d.steps {
		fmt.Printf("  %-92s %8s\n", s.name, s.took.Round(10*time.Millisecond))
		total += s.took
	}
	fmt.Printf("  %-92s %8s\n\n", "total", total.Round(10*time.Millisecond))
	fmt.Println("Where to look next:")
	fmt.Println("  README.md                 protect your own cluster (arca quickstart)")
	fmt.Println("  docs/user-guide.md        install, protect, restore elsewhere, roles, troubleshooting by code")
	fmt.Println("  docs/design.md            how the vault, the extension and the repository fit together")
	fmt.Println("  arca --help               every command, with examples")
	fmt.Println("  bash hack/demo.sh --work DIR   keep the vault, repository and logs in DIR to inspect them")
}

// quickstart runs the extension out of the cluster (its installed
// Deployment has no node here) and protects the cluster with one
// `arca quickstart`, which ends with the first backup.
func (d *demo) quickstart(kubeconfig, repoURL string) error {
	if d.inCluster {
		return d.timed("protect namespace "+ns+" with `arca quickstart` (installs the extension as a pod from "+d.extImage+", ends with the first backup)", func() error {
			return d.arcaShow("quickstart", "--kubeconfig", kubeconfig, "--storage", repoURL, "--cluster-name", clusterName,
				"--policy", policyName, "--instance", instanceName, "--include-namespaces", ns, "--image", d.extImage,
				// The owner's policy allows hooks: the restore below runs a
				// smoke-test RestoreHook (refused PolicyDeniesHooks otherwise).
				"--allow-hooks")
		})
	}
	if err := d.timed("run the extension out of the cluster (the Deployment has no node to run on here)", func() error {
		return d.background("extension", "extension", "run", "--kubeconfig", kubeconfig, "--install-crds",
			"--metrics-addr", "0", "--health-addr", "0", "--status-interval", "500ms")
	}); err != nil {
		return err
	}
	return d.timed("protect namespace "+ns+" with `arca quickstart` (ends with the first backup)", func() error {
		// --wait=false: no pod to wait for; the out-of-cluster runner's
		// heartbeat is what quickstart waits for. The hostPath volume is
		// what the Deployment would mount on a one-node cluster.
		return d.arcaShow("quickstart", "--kubeconfig", kubeconfig, "--storage", repoURL, "--wait=false", "--storage-host-path", "/var/lib/arca-demo",
			"--cluster-name", clusterName,
			"--policy", policyName, "--instance", instanceName, "--include-namespaces", ns)
	})
}

// explicitSetup does what quickstart does, one command at a time, then
// takes an on-demand backup.
func (d *demo) explicitSetup(kubeconfig, repoURL string) error {
	if err := d.timed("create the vault \""+vaultName+"\" and a daily policy", func() error {
		if err := d.arcaShow("vault", "create", vaultName, "--description", "arca demo"); err != nil {
			return err
		}
		return d.arcaShow("policy", "create", policyName, "--schedule", "0 2 * * *", "--retain-default", "P7D")
	}); err != nil {
		return err
	}

	if d.inCluster {
		if err := d.timed("install the extension as a pod with a filesystem repository on the node", func() error {
			return d.arcaShow("extension", "install", "--kubeconfig", kubeconfig, "--storage", repoURL, "--image", d.extImage)
		}); err != nil {
			return err
		}
	} else if err := d.timed("install the extension with a filesystem repository and run it out of the cluster", func() error {
		if err := d.arcaShow("extension", "install", "--kubeconfig", kubeconfig, "--storage", repoURL, "--wait=false", "--storage-host-path", "/var/lib/arca-demo"); err != nil {
			return err
		}
		// The installed Deployment has no node to run on here; the same
		// controller runs as a local process against the cluster instead.
		return d.background("extension", "extension", "run", "--kubeconfig", kubeconfig,
			"--metrics-addr", "0", "--health-addr", "0", "--status-interval", "500ms")
	}); err != nil {
		return err
	}

	// The cluster owner's policy for the vault: the defaults, plus hooks,
	// which the in-cluster restore below runs (a smoke test in the
	// restored pod); without --allow-hooks that restore is refused with
	// PolicyDeniesHooks.
	if err := d.timed("enable trusted access for the vault in the cluster (its ClusterTrustPolicy allows hooks)", func() error {
		return d.arcaShow("trusted-access", "enable", "--kubeconfig", kubeconfig, "--vault", vaultName, "--cluster-name", clusterName, "--allow-hooks")
	}); err != nil {
		return err
	}

	if err := d.timed("assign the roles of the trust model (vault reads the cluster, extension writes the storage)", func() error {
		if err := d.arcaShow("role", "assign", "--principal", "vault:"+vaultName, "--role", "Reader", "--scope-cluster", clusterName); err != nil {
			return err
		}
		return d.arcaShow("role", "assign", "--principal", "extension:"+clusterName, "--role", "Storage Contributor", "--scope-storage", repoURL)
	}); err != nil {
		return err
	}

	if err := d.timed("protect namespace "+ns+": create the backup instance \""+instanceName+"\" (the vault validates first)", func() error {
		return d.arcaShow("instance", "create", instanceName, "--cluster", clusterName, "--policy", policyName,
			"--storage", repoURL, "--include-namespaces", ns)
	}); err != nil {
		return err
	}

	return d.timed("back up now through the vault and the extension", func() error {
		return d.arcaShow("backup", "now", instanceName, "--wait")
	})
}
