package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
)

// TestRestoreVolumeDataSourceFlags: --volume-data-source and
// --volume-data-source-for reach the criteria; bad values name the flag.
func TestRestoreVolumeDataSourceFlags(t *testing.T) {
	none := func(string) bool { return false }
	o := &RestoreStartOptions{VolumeDataSource: "VAULT", VolumeDataSourceFor: []string{"shop/db=snapshot", "shop/cache=auto"}}
	raw, err := o.Criteria(none)
	if err != nil {
		t.Fatal(err)
	}
	var c v1alpha1.RestoreCriteria
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c.VolumeDataSource != v1alpha1.VolumeDataVault || c.VolumeDataSources["shop/db"] != v1alpha1.VolumeDataSnapshot ||
		c.VolumeDataSources["shop/cache"] != v1alpha1.VolumeDataAuto || c.VolumeDataSourceFor("other/x") != v1alpha1.VolumeDataVault {
		t.Errorf("criteria %+v", c)
	}
	for _, tc := range []struct {
		o    RestoreStartOptions
		want string
	}{
		{RestoreStartOptions{VolumeDataSource: "tape"}, `--volume-data-source "tape": want auto, snapshot or vault`},
		{RestoreStartOptions{VolumeDataSourceFor: []string{"shop/db"}}, `--volume-data-source-for "shop/db": want namespace/claim=auto|snapshot|vault`},
		{RestoreStartOptions{VolumeDataSourceFor: []string{"db=vault"}}, `volumeDataSources: "db" is not a claim`},
		{RestoreStartOptions{VolumeDataSource: "vault", WithoutVolumeData: true}, "persistentVolumeRestoreMode is RestoreWithoutVolumeData"},
	} {
		if _, err := tc.o.Criteria(none); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}
