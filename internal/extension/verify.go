package extension

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/repo"
	"github.com/arca-backup/arca/internal/restore"
	"github.com/arca-backup/arca/internal/trustpolicy"
	"github.com/arca-backup/arca/internal/verify"
)

// verification is the state of a RestoreJob with spec.verification: the
// restore runs as usual (runRestore), into sandbox namespaces, and these
// steps around it check the data, compare what came back, give the verdict
// and remove the sandbox (docs/extension.md, Verification).
type verification struct {
	x       *Extension
	spec    v1alpha1.VerificationSpec
	name    string // the job's name: the restore label
	token   string
	res     v1alpha1.VerificationResult
	codes   map[string]bool
	diffs   []codedDifference
	mapping map[string]string
}

type codedDifference struct {
	code string
	d    v1alpha1.VerificationDifference
}

func (x *Extension) newVerification(j *v1alpha1.RestoreJob) *verification {
	if j.Spec.Verification == nil {
		return nil
	}
	return &verification{x: x, spec: *j.Spec.Verification, name: j.Name, token: verify.Token(string(j.UID)), codes: map[string]bool{}}
}

// criteria checks what a verification allows of the restore criteria and
// sets the rest: conflicts skipped, volumes with or without data.
func (v *verification) criteria(crit *v1alpha1.RestoreCriteria) *result {
	bad := func(why string) *result {
		r := failed(v1alpha1.CodeInvalidSpec, "invalid verification: %s", why)
		return &r
	}
	switch {
	case len(crit.NamespaceMappings) > 0:
		return bad("namespaceMappings must be empty: the extension maps every namespace to its sandbox " + v1alpha1.VerificationNamespacePrefix + "<job>-<namespace>")
	case crit.IncludeClusterScopeResources != nil && *crit.IncludeClusterScopeResources:
		return bad("includeClusterScopeResources must be off: a verification restores namespaced objects only, into sandbox namespaces")
	case crit.DryRun:
		return bad("dryRun must be off: a verification restores for real, into sandbox namespaces")
	case len(crit.ResourceModifiers) > 0:
		return bad("resourceModifiers must be empty: the restored objects are compared with the recovery point as it is")
	case crit.ConflictPolicy == v1alpha1.ConflictPatch:
		return bad("conflictPolicy must be Skip: nothing outside the sandbox is changed")
	case v.spec.ReadDataPercent < 0 || v.spec.ReadDataPercent > 100:
		return bad(fmt.Sprintf("readDataPercent %d is not between 0 and 100", v.spec.ReadDataPercent))
	}
	off := false
	crit.IncludeClusterScopeResources = &off
	crit.ConflictPolicy = v1alpha1.ConflictSkip
	if v.spec.SkipVolumes {
		crit.PersistentVolumeRestoreMode = v1alpha1.RestoreWithoutVolumeData
	}
	return nil
}

func (v *verification) fail(code string, diffs ...v1alpha1.VerificationDifference) {
	v.codes[code] = true
	for _, d := range diffs {
		v.diffs = append(v.diffs, codedDifference{code, d})
		if len(v.res.Differences) < v1alpha1.MaxItemResults {
			v.res.Differences = append(v.res.Differences, d)
		}
	}
}

// checkData checks the repository (structure, and readDataPercent of its
// packs read whole) and records damage that reaches the recovery point.
func (v *verification) checkData(ctx context.Context, r repo.Reader, rp *repo.RecoveryPoint) error {
	share := float64(v.spec.ReadDataPercent) / 100
	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: share > 0, ReadDataShare: share})
	if err != nil {
		return err
	}
	v.res.PacksChecked, v.res.PacksRead = int64(rep.Packs), int64(rep.PacksRead)
	for _, d := range rep.Damaged {
		for _, id := range d.RecoveryPoints {
			if id == rp.ID {
				v.fail(v1alpha1.CodeVerificationDataDamaged, v1alpha1.VerificationDifference{Object: d.File, Problem: d.Problem})
				break
			}
		}
	}
	return nil
}

// sandbox maps every namespace of the point to its sandbox namespace.
func (v *verification) sandbox(ctx context.Context, r repo.Reader, rp *repo.RecoveryPoint, crit *v1alpha1.RestoreCriteria) error {
	m, err := verify.Mapping(ctx, r, rp, v.token)
	if err != nil {
		return err
	}
	v.mapping = m
	crit.NamespaceMappings = m
	for _, to := range m {
		v.res.SandboxNamespaces = append(v.res.SandboxNamespaces, to)
	}
	sort.Strings(v.res.SandboxNamespaces)
	return nil
}

// cleanup deletes the sandbox namespaces; it runs whatever happened
// before, with a context that outlives a cancelled job.
func (v *verification) cleanup(ctx context.Context) []v1alpha1.JobIssue {
	if len(v.res.SandboxNamespaces) == 0 {
		v.res.CleanedUp = true
		return nil
	}
	failedNS, err := verify.Cleanup(context.WithoutCancel(ctx), v.x.cfg, v.res.SandboxNamespaces, v.name)
	if err == nil && len(failedNS) == 0 {
		v.res.CleanedUp = true
		return nil
	}
	msg := fmt.Sprintf("sandbox namespaces not deleted: %v", err)
	if err == nil {
		var parts []string
		for n, e := range failedNS {
			parts = append(parts, fmt.Sprintf("%s (%v)", n, e))
		}
		sort.Strings(parts)
		msg = "sandbox namespaces not deleted: " + strings.Join(parts, "; ") + "; delete them with kubectl delete namespace"
	}
	return []v1alpha1.JobIssue{{Code: v1alpha1.CodeVerificationCleanupFailed, Message: msg}}
}

// restoreFailed turns an error of the restore into the verdict, except a
// refusal by the trust policy, which stays the job's error.
func (v *verification) restoreFailed(err error) *result {
	var refused *trustpolicy.Refusal
	if errors.As(err, &refused) {
		return refusal(refused)
	}
	v.fail(v1alpha1.CodeVerificationRestoreFailed, v1alpha1.VerificationDifference{Object: "restore", Problem: err.Error()})
	return nil
}

// compare records the restore's failed objects, failed hooks and the
// objects that differ from the point.
func (v *verification) compare(ctx context.Context, r repo.Reader, rp *repo.RecoveryPoint, rres *restore.Result, crit *v1alpha1.RestoreCriteria, hr *hookRunner) error {
	for _, it := range rres.Failures() {
		v.fail(v1alpha1.CodeVerificationRestoreFailed, v1alpha1.VerificationDifference{Object: it.Ref(), Problem: "restore failed: " + it.Reason})
	}
	for _, w := range hr.warnings {
		switch w.Code {
		case v1alpha1.CodePostHookFailed, v1alpha1.CodeHookFailed, v1alpha1.CodeHookMatchedNoPod:
			v.fail(v1alpha1.CodeVerificationHookFailed, v1alpha1.VerificationDifference{Object: w.Object, Problem: w.Code + ": " + w.Message})
		}
	}
	cmp, err := verify.Compare(ctx, v.x.cfg, r, rp, rres, verify.Options{Criteria: crit, RestoreName: v.name})
	if err != nil {
		return err
	}
	v.res.ObjectsCompared = cmp.Compared
	for _, d := range cmp.Differences {
		v.fail(v1alpha1.CodeVerificationObjectsDiffer, v1alpha1.VerificationDifference{Object: d.Object, Problem: d.Problem})
	}
	return nil
}

// verdict finishes the job: Verified (Completed, or CompletedWithWarnings
// when the cleanup or the restore warned) or VerificationFailed (Failed,
// one error per code).
func (v *verification) verdict(rpID string, res result, cleanupIssues []v1alpha1.JobIssue) result {
	res.warnings = append(res.warnings, cleanupIssues...)
	for c := range v.codes {
		v.res.Codes = append(v.res.Codes, c)
	}
	sort.Strings(v.res.Codes)
	out := v.res
	if len(out.Codes) == 0 {
		out.Verdict = v1alpha1.VerdictVerified
		res.phase = v1alpha1.JobCompleted
		if len(res.warnings) > 0 {
			res.phase = v1alpha1.JobCompletedWithWarnings
		}
		res.message = fmt.Sprintf("recovery point %s verified: %d objects restored into %d sandbox namespaces and compared, %d of %d packs read whole",
			v1alpha1.ShortID(rpID), out.ObjectsCompared, len(out.SandboxNamespaces), out.PacksRead, out.PacksChecked)
	} else {
		out.Verdict = v1alpha1.VerdictVerificationFailed
		res.phase = v1alpha1.JobFailed
		res.errors = nil
		for _, c := range out.Codes {
			n, first := 0, ""
			for _, cd := range v.diffs {
				if cd.code == c {
					if n == 0 {
						first = cd.d.Object + ": " + cd.d.Problem
					}
					n++
				}
			}
			res.errors = append(res.errors, v1alpha1.JobIssue{Code: c, Message: fmt.Sprintf("%d problems, the first %s; see status.verification.differences", n, first)})
		}
		res.message = fmt.Sprintf("recovery point %s failed verification (%s): %d problems", v1alpha1.ShortID(rpID), strings.Join(out.Codes, ", "), len(v.diffs))
	}
	prev := res.apply
	res.apply = func(jj job) {
		if prev != nil {
			prev(jj)
		}
		s := &jj.(*v1alpha1.RestoreJob).Status
		s.RecoveryPointID = rpID
		s.Verification = &out
	}
	return res
}

// finishVerification is the end of a verification's restore: the restore's
// outcome (err as operations.Restore returned it), the comparison, the
// removal of the sandbox (always) and the verdict.
func (x *Extension) finishVerification(ctx context.Context, v *verification, r repo.Reader, rp *repo.RecoveryPoint,
	rres *restore.Result, err error, crit *v1alpha1.RestoreCriteria, hr *hookRunner) result {
	var itemsFailed *restore.ItemsFailedError
	res := result{}
	switch {
	case err != nil && !errors.As(err, &itemsFailed):
		if refused := v.restoreFailed(err); refused != nil {
			cleanup := v.cleanup(ctx)
			out := *refused
			out.warnings = append(out.warnings, cleanup...)
			return out
		}
	default:
		for _, w := range rres.Warnings {
			res.warnings = append(res.warnings, v1alpha1.JobIssue{Code: w.Code, Message: w.Message, Object: w.Object})
		}
		if cerr := v.compare(ctx, r, rp, rres, crit, hr); cerr != nil {
			v.fail(v1alpha1.CodeVerificationObjectsDiffer, v1alpha1.VerificationDifference{Object: "sandbox", Problem: "compare: " + cerr.Error()})
		}
		results := map[string]int64{}
		for a, n := range rres.Summary {
			results[string(a)] = int64(n)
		}
		items := restoreItems(rres)
		res.apply = func(jj job) {
			s := &jj.(*v1alpha1.RestoreJob).Status
			s.Results = results
			s.Items = items
		}
	}
	res = res.withHooks(hr)
	return v.verdict(rp.ID.String(), res, v.cleanup(ctx))
}
