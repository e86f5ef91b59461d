package server

import (
	"fmt"
	"net/http"

	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Handlers of soft delete, the resource guard's approvals, the vault's
// storage figures and webhook subscriptions (issue 17).

// deleteRecoveryPoint answers the soft-deleted point (200), or, in a
// vault without soft delete, 202 and the queued deletion job.
func (s *Server) deleteRecoveryPoint(w http.ResponseWriter, r *http.Request) {
	ver, ok := version(w, r)
	if !ok {
		return
	}
	rp, j, err := s.Service.DeleteRecoveryPoint(r.Context(), r.PathValue("vault"), r.PathValue("id"), ver)
	if err == nil && j != nil {
		replyJob(w, r, j, nil)
		return
	}
	reply(w, r, rp, err)
}

func (s *Server) undeleteRecoveryPoint(w http.ResponseWriter, r *http.Request) {
	rp, err := s.Service.UndeleteRecoveryPoint(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	reply(w, r, rp, err)
}

func (s *Server) undeleteInstance(w http.ResponseWriter, r *http.Request) {
	if ver, ok := version(w, r); ok {
		in, err := s.Service.UndeleteInstance(r.Context(), r.PathValue("vault"), r.PathValue("instance"), ver)
		reply(w, r, in, err)
	}
}

func (s *Server) vaultUsage(w http.ResponseWriter, r *http.Request) {
	u, err := s.Service.VaultUsage(r.Context(), r.PathValue("vault"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// ---- approvals ----

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	as, err := s.Service.ListApprovals(r.Context(), r.PathValue("vault"), store.ApprovalFilter{State: q.Get("state"), Requester: q.Get("requester")})
	replyList(w, r, as, err)
}

func (s *Server) getApproval(w http.ResponseWriter, r *http.Request) {
	a, err := s.Service.GetApproval(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	reply(w, r, a, err)
}

type decisionBody struct {
	Reason string `json:"reason"`
}

func (s *Server) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b decisionBody
		if r.ContentLength != 0 && !decoded(w, r, &b) {
			return
		}
		a, err := s.Service.DecideApproval(r.Context(), r.PathValue("vault"), r.PathValue("id"), approve, b.Reason)
		reply(w, r, a, err)
	}
}

// ---- notifications ----

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	subs, err := s.Service.ListSubscriptions(r.Context(), r.PathValue("vault"))
	replyList(w, r, subs, err)
}

func (s *Server) addSubscription(w http.ResponseWriter, r *http.Request) {
	var b service.SubscriptionSpec
	if !decoded(w, r, &b) {
		return
	}
	sub, err := s.Service.AddSubscription(r.Context(), r.PathValue("vault"), b)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.Log.Info("audit", "event", "webhookAdded", "principal", Principal(r.Context()), "vault", sub.Vault, "subscription", sub.ID, "url", sub.URL, "events", sub.Events)
	w.Header().Set("Location", fmt.Sprintf("/api/v1/vaults/%s/notifications/%s", sub.Vault, sub.ID))
	writeJSON(w, http.StatusCreated, sub)
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := s.Service.GetSubscription(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sub)
}

func (s *Server) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	err := s.Service.DeleteSubscription(r.Context(), r.PathValue("vault"), r.PathValue("id"))
	if err == nil {
		s.Log.Info("audit", "event", "webhookRemoved", "principal", Principal(r.Context()), "vault", r.PathValue("vault"), "subscription", r.PathValue("id"))
	}
	replyNone(w, r, err)
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ds, err := s.Service.ListDeliveries(r.Context(), r.PathValue("vault"), q.Get("subscription"), q.Get("limit"))
	replyList(w, r, ds, err)
}
