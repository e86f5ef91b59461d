package clusterdriver_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/trustedaccess"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// TestQueryForbiddenIsNotRevocation: a vault identity whose role has no
// rule for recoverypointqueries (trusted access enabled before queries
// existed) gets QueryForbiddenInCluster naming the command that updates
// it, and the cluster stays Connected: a refused query must not mark the
// cluster revoked and stop its backups.
func TestQueryForbiddenIsNotRevocation(t *testing.T) {
	ctx := context.Background()
	cp, c := newCluster(t, v1alpha1.ExtensionNamespace)
	g, err := trustedaccess.Enable(ctx, cp.Config(), trustedaccess.EnableOptions{Vault: "old", Cluster: "c1", TokenTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &v1alpha1.StorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: v1alpha1.ExtensionNamespace},
		Spec: v1alpha1.StorageLocationSpec{URL: "file:///srv/repo", CredentialsSecret: "creds"}}); err != nil {
		t.Fatal(err)
	}
	// The operator role as it was before queries.
	role := &rbacv1.ClusterRole{}
	if err := c.Get(ctx, client.ObjectKey{Name: v1alpha1.BackupOperatorRole}, role); err != nil {
		t.Fatal(err)
	}
	var kept []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if len(r.Resources) != 1 || r.Resources[0] != "recoverypointqueries" {
			kept = append(kept, r)
		}
	}
	if len(kept) == len(role.Rules) {
		t.Fatalf("the operator role has no rule for recoverypointqueries: %+v", role.Rules)
	}
	role.Rules = kept
	if err := c.Update(ctx, role); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "v.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateCluster(ctx, &store.Cluster{Name: "c1", Server: g.Server, CAData: g.CAData, Namespace: g.Namespace,
		ServiceAccount: g.ServiceAccount, Token: g.Token, TokenExpiresAt: &g.TokenExpiresAt, State: store.ClusterConnected}); err != nil {
		t.Fatal(err)
	}
	ta := clusterdriver.NewTrustedAccess(st, nil, nil).(*clusterdriver.TrustedAccess)
	// The RoleBinding's cache in the authorizer: wait for the refusal.
	var se *service.Error
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = ta.QueryRecoveryPoint(ctx, "c1", v1alpha1.RecoveryPointQuerySpec{Kind: v1alpha1.QueryContents,
			RecoveryPoint: strings.Repeat("ab", 32), StorageLocation: "default"})
		if errors.As(err, &se) && se.Code == clusterdriver.CodeQueryForbiddenInCluster || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if se == nil || se.Code != clusterdriver.CodeQueryForbiddenInCluster || !strings.Contains(se.Message, "arca trusted-access enable --vault old --cluster-name c1") {
		t.Fatalf("query with the old role: %v", err)
	}
	cl, err := st.GetCluster(ctx, "c1")
	if err != nil || cl.State != store.ClusterConnected {
		t.Fatalf("cluster after a refused query: %+v, %v", cl, err)
	}
}
