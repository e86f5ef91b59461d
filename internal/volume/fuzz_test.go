package volume

import (
	"encoding/json"
	"reflect"
	"testing"
)

// Volume records are read back from recovery points, which may come from
// another cluster or an older or newer arca. Decode must never panic; what
// it accepts survives a round trip, and it never accepts a newer version.
func FuzzDecodeRecords(f *testing.F) {
	f.Add([]byte(`{"version":1,"backupID":"b1","snapshots":[{"namespace":"db","pvc":"data","pv":"pv-1","driver":"hostpath.csi.k8s.io","snapshotHandle":"h","restoreSize":1048576,"snapshotClass":"c","volumeHandle":"v","volumeMode":"Filesystem","content":"arca-b1-0","snapshot":"s","time":"2026-01-01T00:00:00Z"}],"spreadMillis":12,"skipped":[{"namespace":"db","pvc":"logs","code":"VolumeNoSnapshotClass","message":"m"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`null`))
	f.Add([]byte(``))
	f.Add([]byte(`{"snapshots":[null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := Decode(data)
		if err != nil {
			if recs != nil {
				t.Fatalf("Decode failed (%v) but returned records", err)
			}
			return
		}
		if recs.Version > RecordsVersion {
			t.Fatalf("Decode accepted version %d, newer than %d", recs.Version, RecordsVersion)
		}
		enc, err := json.Marshal(recs)
		if err != nil {
			t.Fatalf("decoded records do not encode: %v", err)
		}
		back, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded records %s do not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(normalize(back), normalize(recs)) {
			t.Fatalf("round trip changed the records:\n%+v\n%+v", recs, back)
		}
	})
}

// normalize drops the distinctions JSON does not keep (monotonic clock
// readings, time zones of equal instants).
func normalize(r *Records) *Records {
	c := *r
	c.Snapshots = append([]Record(nil), r.Snapshots...)
	for i := range c.Snapshots {
		c.Snapshots[i].Time = c.Snapshots[i].Time.UTC()
	}
	if r.FirstSnapshot != nil {
		t := r.FirstSnapshot.UTC()
		c.FirstSnapshot = &t
	}
	if r.LastSnapshot != nil {
		t := r.LastSnapshot.UTC()
		c.LastSnapshot = &t
	}
	if len(c.Snapshots) == 0 {
		c.Snapshots = nil
	}
	if len(c.Skipped) == 0 {
		c.Skipped = nil
	}
	return &c
}
