package service

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/store"
)

// ClusterRegistration registers a cluster or renews its credential
// (what `arca trusted-access enable` sends).
type ClusterRegistration struct {
	Name           string     `json:"name"`
	Server         string     `json:"server"`
	CAData         []byte     `json:"caData,omitempty"`
	Namespace      string     `json:"namespace"`
	ServiceAccount string     `json:"serviceAccount"`
	Token          string     `json:"token"`
	TokenExpiresAt *time.Time `json:"tokenExpiresAt,omitempty"`
}

func (b *ClusterRegistration) check() error {
	switch {
	case !strings.HasPrefix(b.Server, "https://"):
		return InvalidField("InvalidValue", "server", b.Server, "want the cluster's https:// API server URL")
	case b.Namespace == "" || b.ServiceAccount == "":
		return InvalidField("MissingField", "namespace", "", "namespace and serviceAccount: required", "namespace and serviceAccount: required")
	case b.Token == "":
		return InvalidField("MissingField", "token", "", "required (a TokenRequest token of the service account)")
	}
	return nil
}

// ListClusters lists the registered clusters (never their tokens).
func (s *Service) ListClusters(ctx context.Context) ([]*store.Cluster, error) {
	return s.Store.ListClusters(ctx)
}

// GetCluster returns a registered cluster.
func (s *Service) GetCluster(ctx context.Context, name string) (*store.Cluster, error) {
	return s.Store.GetCluster(ctx, name)
}

// RegisterCluster registers a cluster, Connected.
func (s *Service) RegisterCluster(ctx context.Context, b ClusterRegistration) (*store.Cluster, error) {
	if err := CheckName("name", b.Name); err != nil {
		return nil, err
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	c := &store.Cluster{Name: b.Name, Server: b.Server, CAData: b.CAData, Namespace: b.Namespace, ServiceAccount: b.ServiceAccount,
		Token: b.Token, TokenExpiresAt: b.TokenExpiresAt, State: store.ClusterConnected, RegisteredAt: s.now().Now()}
	if err := s.Store.CreateCluster(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// UpdateCluster replaces a cluster's connection (re-enabling trusted
// access); it is Connected again.
func (s *Service) UpdateCluster(ctx context.Context, name string, expected int64, b ClusterRegistration) (*store.Cluster, error) {
	if b.Name != "" && b.Name != name {
		return nil, InvalidField("ImmutableField", "name", b.Name, "a cluster's name cannot change", "name: %q cannot become %q", name, b.Name)
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	c, err := s.Store.GetCluster(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := Precondition(expected, c.Version); err != nil {
		return nil, err
	}
	c.Server, c.CAData, c.Namespace, c.ServiceAccount = b.Server, b.CAData, b.Namespace, b.ServiceAccount
	c.Token, c.TokenExpiresAt, c.State, c.Message = b.Token, b.TokenExpiresAt, store.ClusterConnected, ""
	// The owner gave a new credential: its renewal starts over.
	c.RegisteredAt, c.Renewals = s.now().Now(), 0
	return c, fromStore(s.Store.UpdateCluster(ctx, c), expected)
}

// DeleteCluster forgets a registered cluster.
//
// Unregistering a cluster that instances of a guarded vault protect is a
// guarded operation in each such vault.
func (s *Service) DeleteCluster(ctx context.Context, name string, expected int64) error {
	vs, err := s.Store.ListVaults(ctx)
	if err != nil {
		return err
	}
	var used []*store.Approval
	giveBack := func() {
		for _, a := range used {
			s.unuse(ctx, a)
		}
	}
	for _, v := range vs {
		if !v.ResourceGuard {
			continue
		}
		ins, err := s.Store.ListInstances(ctx, v.Name, "")
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(ins, func(in *store.Instance) bool { return in.Cluster == name }) {
			continue
		}
		a, err := s.guard(ctx, v, OpUnregisterCluster, name)
		if err != nil {
			giveBack()
			return err
		}
		used = append(used, a)
	}
	if err := s.Store.DeleteCluster(ctx, name, expected); err != nil {
		giveBack()
		return fromStore(err, expected)
	}
	return nil
}
