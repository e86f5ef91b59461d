package restore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/restore"
)

// TestCorpusRoundTrip restores real install manifests: Argo CD (a 1.4 MB
// CRD, cluster roles bound to namespaced service accounts) and ingress-nginx
// (Jobs with generated selectors, a validating webhook with failurePolicy
// Fail whose backend never runs here). The webhook rejects every Ingress
// while it exists, so the restore must create it after the Ingresses.
func TestCorpusRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := kc(t)
	argo := load(t, "testdata/corpus/argo-cd-install.yaml")
	nginx := load(t, "testdata/corpus/ingress-nginx-deploy.yaml")
	ours := parse(t, `
apiVersion: v1
kind: Namespace
metadata: {name: corpus-app}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: corpus-app}
spec:
  ingressClassName: nginx
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: guestbook, namespace: argocd}
spec:
  project: default
  source: {repoURL: "https://github.com/argoproj/argocd-example-apps.git", targetRevision: HEAD, path: guestbook}
  destination: {server: "https://kubernetes.default.svc", namespace: guestbook}
`)
	// The webhook would block every later test's Ingresses: remove what
	// this test leaves behind.
	t.Cleanup(func() {
		all := append(append(append([]*unstructured.Unstructured{}, argo...), nginx...), ours...)
		nss, clusterObjs := clusterScoped(all)
		if err := c.DeleteAndWait(ctx, clusterObjs, "", 2*time.Minute); err != nil {
			t.Error(err)
		}
		_ = c.DeleteAndWait(ctx, nss, "", 10*time.Second)
	})
	if err := c.Apply(ctx, argo, "argocd"); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, ours, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, nginx, "ingress-nginx"); err != nil {
		t.Fatal(err)
	}
	// The webhook is live: an Ingress cannot be created now. The API server
	// picks the configuration up within seconds; without this the ordering
	// below would not be tested, so the test fails rather than go on.
	probe := parse(t, `{"apiVersion":"networking.k8s.io/v1","kind":"Ingress","metadata":{"name":"probe","namespace":"corpus-app"},"spec":{"ingressClassName":"nginx","defaultBackend":{"service":{"name":"x","port":{"number":80}}}}}`)
	var rejected error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if rejected = c.Apply(ctx, probe, ""); rejected != nil {
			break
		}
		_ = c.DeleteAndWait(ctx, probe, "", 10*time.Second)
	}
	if rejected == nil || !strings.Contains(rejected.Error(), "webhook") {
		t.Fatalf("the ingress-nginx webhook (failurePolicy Fail, no backend) should reject Ingresses, got %v", rejected)
	}

	r := newRepo(t)
	bcfg := v1alpha1.BackupConfiguration{IncludedNamespaces: []string{"argocd", "ingress-nginx", "corpus-app"}}
	rp1 := doBackup(t, r, bcfg)
	t.Logf("backed up %d objects, %d bytes", rp1.Summary.Items, rp1.Summary.Bytes)
	for _, want := range []string{"customresourcedefinitions.apiextensions.k8s.io", "validatingwebhookconfigurations.admissionregistration.k8s.io",
		"ingressclasses.networking.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io", "applications.argoproj.io", "jobs.batch", "ingresses.networking.k8s.io"} {
		if rp1.Summary.Counts[want] == 0 {
			t.Errorf("backup has no %s", want)
		}
	}

	all := append(append(append([]*unstructured.Unstructured{}, argo...), nginx...), ours...)
	nss, clusterObjs := clusterScoped(all)
	nss = append(nss, parse(t, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"argocd"}}`)...)
	if err := c.DeleteAndWait(ctx, clusterObjs, "", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAndWait(ctx, nss, "", 3*time.Minute); err != nil {
		t.Fatal(err)
	}

	res := doRestore(t, r, rp1, v1alpha1.RestoreCriteria{IncludeClusterScopeResources: v1alpha1.Bool(true)})
	t.Logf("restore summary: %v", res.Summary)
	if res.Summary[restore.Failed] != 0 {
		t.Fatalf("failures: %v", res.Failures())
	}
	var ingressTier, webhookTier int
	for it := range res.Items.All() {
		switch it.Resource {
		case "ingresses":
			ingressTier = it.Tier
			if it.Action != restore.Created {
				t.Errorf("%s: %s %s", it.Ref(), it.Action, it.Reason)
			}
		case "validatingwebhookconfigurations":
			webhookTier = it.Tier
		}
	}
	if webhookTier <= ingressTier {
		t.Errorf("webhook tier %d not after ingress tier %d", webhookTier, ingressTier)
	}
	app, err := c.Dyn.Resource(schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "applications"}).Namespace("argocd").Get(ctx, "guestbook", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Application not restored: %v", err)
	}
	if p, _, _ := unstructured.NestedString(app.Object, "spec", "source", "path"); p != "guestbook" {
		t.Errorf("Application source path %q", p)
	}
	rp2 := doBackup(t, r, bcfg)
	assertSameContent(t, r, rp1, rp2)
}
