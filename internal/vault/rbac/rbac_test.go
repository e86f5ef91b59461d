package rbac

import "testing"

func TestScopes(t *testing.T) {
	for _, tc := range []struct {
		outer, inner string
		want         bool
	}{
		{"/", "/vaults/a/instances/x", true},
		{"/vaults/a", "/vaults/a", true},
		{"/vaults/a", "/vaults/a/policies/p", true},
		{"/vaults/a", "/vaults/ab", false},
		{"/vaults/a/instances/x", "/vaults/a", false},
		{StorageScope("s3://b"), StorageScope("s3://b/prefix"), false},
	} {
		if got := Contains(tc.outer, tc.inner); got != tc.want {
			t.Errorf("Contains(%q, %q) = %v", tc.outer, tc.inner, got)
		}
	}
	for _, s := range []string{"/", "/vaults/a", "/vaults/a/policies/p", "/vaults/a/instances/i", "/clusters/c", StorageScope("file:///srv/repo"), SnapshotScope("csi-snap")} {
		if err := ValidScope(s); err != nil {
			t.Error(err)
		}
	}
	for _, s := range []string{"", "/vaults", "/vaults/A", "/vaults/a/jobs/x", "/storageLocations/a/b", "vaults/a"} {
		if ValidScope(s) == nil {
			t.Errorf("ValidScope(%q) accepted", s)
		}
	}
}

func TestRolesAndDecide(t *testing.T) {
	if r, ok := FindRole("backup-operator"); !ok || r.Name != BackupOperator {
		t.Fatal("FindRole by CLI spelling")
	}
	as := []Assignment{{"user:a", BackupOperator, "/vaults/v"}, {"user:b", Owner, "/vaults/w"}}
	if !Decide(as, "user:a", InstancesBackup, "/vaults/v/instances/i").Allowed {
		t.Error("operator backs up below its scope")
	}
	if Decide(as, "user:a", PoliciesWrite, "/vaults/v/policies/p").Allowed {
		t.Error("operator writes policies")
	}
	if Decide(as, "user:b", VaultsRead, "/vaults/v").Allowed {
		t.Error("owner of w reads v")
	}
	for _, r := range Roles {
		for _, a := range r.Actions {
			if !contains(AllActions, a) {
				t.Errorf("role %s: unknown action %s", r.Name, a)
			}
		}
	}
	c, _ := FindRole(Contributor)
	if c.Allows(RoleAssignmentsWrite) || c.Allows(TokensWrite) {
		t.Error("Contributor must not grant access or mint tokens")
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
