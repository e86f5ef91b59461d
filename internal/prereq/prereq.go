// Package prereq checks the prerequisites of a backup or a restore against
// the real cluster, storage and role assignments, and says for each failure
// exactly how to fix it. Every check has a stable ID, and every failure a
// stable code (docs/security.md lists them with cause and remedy).
//
// The package knows nothing of the vault: role assignments and trusted
// access come through the Access and Connections interfaces, which the CLI
// (or the vault) implements.
package prereq

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Result of one check.
type Result string

const (
	Passed  Result = "Passed"
	Failed  Result = "Failed"
	Warning Result = "Warning" // does not block, but something will not be protected or restored as one might expect
	Skipped Result = "Skipped" // not applicable, or an earlier failure prevents it
)

// Check is one prerequisite and its outcome.
type Check struct {
	ID      string `json:"id"`             // stable check name, e.g. KubernetesVersion
	Name    string `json:"name"`           // what is checked, for people
	Result  Result `json:"result"`         // Passed, Failed, Warning, Skipped
	Code    string `json:"code,omitempty"` // stable failure or warning code
	Message string `json:"message"`        // what was found
	Remedy  string `json:"remedy,omitempty"`
	// Fix, on a missing role assignment, is what --assign-missing-roles creates.
	Fix *RoleFix `json:"fix,omitempty"`
}

// RoleFix is a role assignment that would satisfy a failed check.
type RoleFix struct {
	Who  Identity `json:"principal"`
	Role string   `json:"role"`
	At   Scope    `json:"scope"`
}

// Report is the outcome of all checks.
type Report struct {
	Operation string  `json:"operation"` // backup or restore
	Target    string  `json:"target"`    // instance or recovery point → cluster
	Passed    bool    `json:"passed"`    // no check Failed
	Checks    []Check `json:"checks"`
}

func (r *Report) add(c Check) *Check {
	r.Checks = append(r.Checks, c)
	return &r.Checks[len(r.Checks)-1]
}

func (r *Report) finish() *Report {
	r.Passed = true
	for _, c := range r.Checks {
		if c.Result == Failed {
			r.Passed = false
		}
	}
	return r
}

// NotConnected is the report for a cluster the validator cannot reach at
// all because the vault holds no trusted access to it.
func NotConnected(operation, target, cluster string) *Report {
	r := &Report{Operation: operation, Target: target}
	r.add(Check{ID: "TrustedAccess", Name: "trusted access enabled for the vault on " + cluster, Result: Failed, Code: "TrustedAccessNotEnabled",
		Message: "the vault has no registration for cluster " + cluster + ", so it cannot check it",
		Remedy:  fmt.Sprintf("the cluster's owner runs: arca trusted-access enable --kubeconfig <%s kubeconfig> --vault <vault> --cluster-name %s (or validate from the CLI with --kubeconfig)", cluster, cluster)})
	return r.finish()
}

// Find returns the check with the given ID, or nil.
func (r *Report) Find(id string) *Check {
	for i := range r.Checks {
		if r.Checks[i].ID == id {
			return &r.Checks[i]
		}
	}
	return nil
}

// Failures lists the checks that failed.
func (r *Report) Failures() []Check {
	var out []Check
	for _, c := range r.Checks {
		if c.Result == Failed {
			out = append(out, c)
		}
	}
	return out
}

// WriteTable prints check, result and remedy (the message when passed).
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tRESULT\tCODE\tDETAILS / REMEDY")
	for _, c := range r.Checks {
		code := c.Code
		if code == "" {
			code = "-"
		}
		detail := c.Message
		if c.Remedy != "" {
			detail += " → " + c.Remedy
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Result, code, strings.ReplaceAll(detail, "\n", " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "all prerequisites met"
	if !r.Passed {
		verdict = fmt.Sprintf("%d prerequisite(s) not met", len(r.Failures()))
	}
	_, err := fmt.Fprintf(w, "%s %s: %s\n", r.Operation, r.Target, verdict)
	return err
}

// WriteJSON prints the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ---- the vault, as validation sees it ----

// Identity kinds.
const (
	VaultIdentity     = "vault"
	ClusterIdentity   = "cluster"
	ExtensionIdentity = "extension"
)

// Identity is a principal of the trust model: a vault, a cluster, or a
// cluster's extension.
type Identity struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func (i Identity) String() string { return i.Kind + ":" + i.Name }

// Scope kinds.
const (
	VaultScope            = "vault"
	ClusterScope          = "cluster"
	StorageLocationScope  = "storageLocation"
	SnapshotLocationScope = "snapshotLocation"
)

// Scope is where a role is held.
type Scope struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

func (s Scope) String() string { return s.Kind + " " + s.Name }

// Roles named by the trust model.
const (
	RoleOwner              = "Owner"
	RoleReader             = "Reader"
	RoleContributor        = "Contributor"
	RoleBackupContributor  = "Backup Contributor"
	RoleStorageContributor = "Storage Contributor"
	RoleBackupOperator     = "Backup Operator"
)

// Access answers role questions and creates assignments.
type Access interface {
	// HasRole reports whether who holds role, or a role granting at least
	// its actions, at scope or above it.
	HasRole(ctx context.Context, who Identity, role string, at Scope) (bool, error)
	// CallerHasRole is HasRole for whoever runs the validation.
	CallerHasRole(ctx context.Context, role string, at Scope) (bool, error)
	// Assign creates an assignment; the vault refuses unless the caller is
	// Owner at the scope.
	Assign(ctx context.Context, who Identity, role string, at Scope) error
	// AssignCommand is the command that creates an assignment (remedies).
	AssignCommand(who Identity, role string, at Scope) string
}

// Connection is a cluster's trusted-access registration as the vault
// holds it.
type Connection struct {
	State          string // Connected or TrustedAccessRevoked
	Message        string
	Namespace      string
	ServiceAccount string
	TokenExpiresAt *int64 // Unix seconds; nil: unknown
}

// Connections looks up a cluster's trusted-access registration; nil, nil
// when the cluster is not registered.
type Connections interface {
	Connection(ctx context.Context, cluster string) (*Connection, error)
}
