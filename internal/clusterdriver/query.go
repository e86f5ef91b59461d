package clusterdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/sealed"
	"github.com/arca-backup/arca/internal/vault/service"
)

// QueryTimeout bounds how long the vault waits for the extension's answer
// (under the CLI's one-minute request timeout, so that its error arrives).
const QueryTimeout = 45 * time.Second

// queryPoll is how often the answer is looked for.
var queryPoll = 150 * time.Millisecond

// Query asks the cluster's extension a question about a recovery point (a
// RecoveryPointQuery in its namespace), waits for the answer, deletes the
// query and returns the answer. spec.storageLocation is the vault's storage
// location (a StorageLocation's name or URL); the answer is sealed to a key
// made for this query only.
func (d *Driver) Query(ctx context.Context, spec v1alpha1.RecoveryPointQuerySpec) (*v1alpha1.RecoveryPointQueryResult, error) {
	loc, err := d.storageLocation(ctx, spec.StorageLocation, false)
	if err != nil {
		return nil, &service.Error{Kind: service.Conflict, Code: "StorageLocationNotInCluster", Message: err.Error()}
	}
	spec.StorageLocation = loc
	key, err := sealed.NewKey()
	if err != nil {
		return nil, err
	}
	spec.RecipientKey = key.Public()
	q := &v1alpha1.RecoveryPointQuery{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "vault-query-", Namespace: d.namespace, Labels: map[string]string{}},
		Spec:       spec,
	}
	if d.Vault != "" {
		q.Labels[v1alpha1.LabelVault] = d.Vault
	}
	if err := d.c.Create(ctx, q); err != nil {
		if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) {
			return nil, &service.Error{Kind: service.Unavailable, Code: "ExtensionTooOld", Err: err, Message: fmt.Sprintf(
				"the cluster does not serve recoverypointqueries.%s: upgrade its extension (`arca extension install`) to browse recovery points", v1alpha1.GroupName)}
		}
		return nil, fmt.Errorf("create RecoveryPointQuery: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = d.c.Delete(dctx, q, client.Preconditions{UID: &q.UID})
	}()
	wctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	t := time.NewTicker(queryPoll)
	defer t.Stop()
	for {
		cur := &v1alpha1.RecoveryPointQuery{}
		if err := d.c.Get(wctx, client.ObjectKeyFromObject(q), cur); err != nil {
			if wctx.Err() != nil {
				return nil, queryTimedOut(q.Name)
			}
			return nil, fmt.Errorf("read RecoveryPointQuery %s: %w", q.Name, err)
		}
		if cur.Status.Phase.Terminal() {
			return answer(cur, key)
		}
		select {
		case <-wctx.Done():
			return nil, queryTimedOut(q.Name)
		case <-t.C:
		}
	}
}

func queryTimedOut(name string) error {
	return &service.Error{Kind: service.Unavailable, Code: "ExtensionNotAnswering", Message: fmt.Sprintf(
		"the cluster's extension did not answer RecoveryPointQuery %s within %s: is it running (`kubectl -n %s get pods`), and not busy with a long job?",
		name, QueryTimeout, v1alpha1.ExtensionNamespace)}
}

// answer opens a finished query's answer, or turns its error into the
// vault's.
func answer(q *v1alpha1.RecoveryPointQuery, key *sealed.Key) (*v1alpha1.RecoveryPointQueryResult, error) {
	st := &q.Status
	if st.Phase != v1alpha1.JobCompleted {
		code, msg := v1alpha1.CodeQueryFailed, st.Message
		if len(st.Errors) > 0 {
			code, msg = st.Errors[0].Code, st.Errors[0].Message
		}
		return nil, &service.Error{Kind: queryErrorKind(code), Code: code, Message: msg}
	}
	if st.Sealed == nil {
		return nil, errors.New("the extension answered without sealing the answer to the vault's key")
	}
	b, err := key.Open(st.Sealed)
	if err != nil {
		return nil, err
	}
	res := &v1alpha1.RecoveryPointQueryResult{}
	if err := json.Unmarshal(b, res); err != nil {
		return nil, fmt.Errorf("decode the extension's answer: %w", err)
	}
	return res, nil
}

// queryErrorKind maps a query's code to the vault's error kinds.
func queryErrorKind(code string) service.Kind {
	switch {
	case code == v1alpha1.CodePathNotFound, code == v1alpha1.CodeObjectNotFound, code == v1alpha1.CodeVolumeNotFound,
		code == v1alpha1.CodeRecoveryPointNotFound:
		return service.NotFound
	case code == v1alpha1.CodeVaultNotTrusted, strings.HasPrefix(code, "PolicyDenies"):
		return service.Forbidden
	case code == v1alpha1.CodeInvalidSpec:
		return service.Invalid
	case code == v1alpha1.CodeRecoveryPointOfAnotherInstance:
		return service.Conflict // the catalog and the repository disagree
	}
	return service.Unavailable
}

// QueryRecoveryPoint implements service.Querier through trusted access.
func (t *TrustedAccess) QueryRecoveryPoint(ctx context.Context, cluster string, spec v1alpha1.RecoveryPointQuerySpec) (*v1alpha1.RecoveryPointQueryResult, error) {
	dr, ok := t.Driver(cluster)
	if !ok {
		return nil, &service.Error{Kind: service.Unavailable, Code: "ClusterNotConnected", Message: fmt.Sprintf(
			"cluster %q is not registered with the vault: its owner runs `arca trusted-access enable`", cluster)}
	}
	reg := dr.(*registered)
	in, err := reg.inner()
	if err != nil {
		code := "ClusterNotConnected"
		var jc interface{ JobCode() string }
		if errors.As(err, &jc) {
			code = jc.JobCode() // TrustedAccessRevoked, TrustedAccessExpired
		}
		return nil, &service.Error{Kind: service.Unavailable, Code: code, Message: err.Error(), Err: err}
	}
	res, err := in.Query(ctx, spec)
	var se *service.Error
	switch {
	case err == nil, errors.As(err, &se):
	case apierrors.IsForbidden(err):
		// Not a revocation: an identity enabled before queries existed
		// (or whose role was edited) may run jobs but not ask; marking the
		// cluster revoked would stop its backups.
		return nil, &service.Error{Kind: service.Unavailable, Code: CodeQueryForbiddenInCluster, Err: err, Message: fmt.Sprintf(
			"cluster %q refused the vault's identity a RecoveryPointQuery (%v): its trusted-access role predates recovery point queries or was changed; "+
				"the cluster's owner runs `arca trusted-access enable --vault %s --cluster-name %s` again to update it", cluster, err, in.Vault, cluster)}
	default:
		err = reg.check(ctx, err)
	}
	return res, err
}

// CodeQueryForbiddenInCluster: the cluster's RBAC or admission refused the
// vault's identity a RecoveryPointQuery while its jobs may still run.
const CodeQueryForbiddenInCluster = "QueryForbiddenInCluster"
