package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// TestControlPlaneSmoke proves the control plane is real: the pinned
// version is reported, RBAC denies identities without rights and allows
// them once granted, and kube-controller-manager finalizes a deleted
// namespace that still holds objects.
func TestControlPlaneSmoke(t *testing.T) {
	start := time.Now()
	cp := StartControlPlane(t, ControlPlaneOptions{})
	t.Logf("control plane ready in %s: %v", time.Since(start).Round(time.Millisecond), cp.StartupTimes)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := cp.Clientset(t)

	v, err := admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != "v1.37.2" || v.Major != "1" || v.Minor != "37" {
		t.Errorf("server version = %q (major %q, minor %q), want v1.37.2 (version ldflags in tools/kubernetes/build.sh)", v.GitVersion, v.Major, v.Minor)
	}

	const ns = "smoke"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	// A service account with no bindings is denied.
	sa := kubernetes.NewForConfigOrDie(cp.ServiceAccountConfig(t, ns, "nobody"))
	_, err = sa.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("service account without rights listed config maps: err = %v, want Forbidden", err)
	}
	if !strings.Contains(err.Error(), "system:serviceaccount:smoke:nobody") {
		t.Errorf("denial does not name the service account: %v", err)
	}
	_, err = sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "not-allowed"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("service account without rights created a namespace: err = %v, want Forbidden", err)
	}

	// So is a certificate user, until a RoleBinding grants it "view".
	user := kubernetes.NewForConfigOrDie(cp.UserConfig(t, "alice", "team-a"))
	if _, err := user.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("user without rights listed config maps: err = %v, want Forbidden", err)
	}
	_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "team-a-view"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "team-a"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create role binding: %v", err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := user.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("user with view binding still cannot list config maps: %v", err)
	}
	if _, err := user.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("view role listed secrets: err = %v, want Forbidden", err)
	}

	// Namespace deletion with content needs the namespace controller and
	// the garbage collector of kube-controller-manager.
	for i, name := range []string{"a", "b", "c"} {
		_, err := admin.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Data:       map[string]string{"i": string(rune('0' + i))},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create config map: %v", err)
		}
	}
	start = time.Now()
	if err := admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete namespace: %v", err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("namespace %s not deleted: %v", ns, err)
	}
	t.Logf("namespace with objects deleted in %s", time.Since(start).Round(time.Millisecond))
}

// TestControlPlaneWithoutControllerManager checks the fast variant starts
// and serves requests.
func TestControlPlaneWithoutControllerManager(t *testing.T) {
	start := time.Now()
	cp := StartControlPlane(t, ControlPlaneOptions{WithoutControllerManager: true})
	t.Logf("control plane without kube-controller-manager ready in %s", time.Since(start).Round(time.Millisecond))
	if _, err := cp.Clientset(t).CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("get namespace default: %v", err)
	}
	if err := cp.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := cp.Stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

func TestNewMainTRunsCleanupsInReverse(t *testing.T) {
	mt, done := NewMainT("test")
	var order []int
	mt.Cleanup(func() { order = append(order, 1) })
	mt.Cleanup(func() {
		order = append(order, 2)
		mt.Cleanup(func() { order = append(order, 3) })
	})
	done()
	done()
	if got := len(order); got != 3 || order[0] != 2 || order[1] != 3 || order[2] != 1 {
		t.Fatalf("cleanup order = %v, want [2 3 1]", order)
	}
	if mt.Failed() {
		t.Fatal("Failed() = true without Fatalf")
	}
	MarkFailed(mt)
	if !mt.Failed() {
		t.Fatal("Failed() = false after MarkFailed")
	}
}

// TestControlPlaneDiesWithTestProcess kills a test process holding a control
// plane with SIGKILL (no cleanups run) and checks that etcd and
// kube-apiserver do not outlive it.
func TestControlPlaneDiesWithTestProcess(t *testing.T) {
	if os.Getenv("ARCA_TESTENV_CHILD") == "1" {
		return // the child's work is done in TestHelperControlPlaneChild
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperControlPlaneChild$", "-test.v")
	cmd.Env = append(os.Environ(), "ARCA_TESTENV_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// The child prints the API server's and etcd's addresses once up.
	var addrs []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "CHILD-ADDRS "); ok {
			addrs = strings.Fields(a)
			break
		}
	}
	if len(addrs) != 2 {
		t.Fatalf("child did not report its addresses (scan error %v)", sc.Err())
	}
	for _, a := range addrs {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			t.Fatalf("%s not reachable while the child lives: %v", a, err)
		}
		c.Close()
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for _, a := range addrs {
		err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				return true, nil
			}
			c.Close()
			return false, nil
		})
		if err != nil {
			t.Fatalf("%s still serving after its test process was killed", a)
		}
	}
}

// TestHelperControlPlaneChild is the child of
// TestControlPlaneDiesWithTestProcess; it does nothing in a normal run.
func TestHelperControlPlaneChild(t *testing.T) {
	if os.Getenv("ARCA_TESTENV_CHILD") != "1" {
		return
	}
	cp := StartControlPlane(t, ControlPlaneOptions{WithoutControllerManager: true})
	u, err := url.Parse(cp.Config().Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("CHILD-ADDRS %s %s\n", u.Host, cp.env.ControlPlane.Etcd.URL.Host)
	time.Sleep(time.Minute) // killed by the parent long before
}
