package restore

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/arca-backup/arca/api/v1alpha1"
)

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestPrepareObject(t *testing.T) {
	crit := &v1alpha1.RestoreCriteria{NamespaceMappings: map[string]string{"old": "new"}}
	cases := []struct {
		name, group, resource, in, want string
	}{
		{"metadata and status", "", "configmaps",
			`{"metadata":{"name":"c","namespace":"old","uid":"u","resourceVersion":"1","creationTimestamp":"t","generation":2,"managedFields":[]},"data":{"a":"b"},"status":{}}`,
			`{"metadata":{"name":"c","namespace":"new","labels":{"arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"data":{"a":"b"}}`},
		{"service", "", "services",
			`{"metadata":{"name":"s","namespace":"x"},"spec":{"clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1"],"healthCheckNodePort":3,"ports":[{"port":80,"nodePort":30001}]}}`,
			`{"metadata":{"name":"s","namespace":"x","labels":{"arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"spec":{"ports":[{"port":80}]}}`},
		{"headless service", "", "services",
			`{"metadata":{"name":"s"},"spec":{"clusterIP":"None","clusterIPs":["None"]}}`,
			`{"metadata":{"name":"s","labels":{"arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"spec":{"clusterIP":"None","clusterIPs":["None"]}}`},
		{"pv claimRef", "", "persistentvolumes",
			`{"metadata":{"name":"pv"},"spec":{"claimRef":{"namespace":"old","name":"c","uid":"u","resourceVersion":"3"}}}`,
			`{"metadata":{"name":"pv","labels":{"arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"spec":{"claimRef":{"namespace":"new","name":"c"}}}`},
		{"rolebinding subjects", "rbac.authorization.k8s.io", "rolebindings",
			`{"metadata":{"name":"rb","namespace":"old"},"subjects":[{"kind":"ServiceAccount","name":"a","namespace":"old"},{"kind":"User","name":"u"}]}`,
			`{"metadata":{"name":"rb","namespace":"new","labels":{"arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"subjects":[{"kind":"ServiceAccount","name":"a","namespace":"new"},{"kind":"User","name":"u"}]}`},
		{"namespace renamed", "", "namespaces",
			`{"metadata":{"name":"old","labels":{"kubernetes.io/metadata.name":"old","team":"a"}},"spec":{"finalizers":["kubernetes"]}}`,
			`{"metadata":{"name":"new","labels":{"team":"a","arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"spec":{"finalizers":["kubernetes"]}}`},
		{"job generated selector", "batch", "jobs",
			`{"metadata":{"name":"j"},"spec":{"selector":{"matchLabels":{"batch.kubernetes.io/controller-uid":"u"}},"template":{"metadata":{"labels":{"batch.kubernetes.io/controller-uid":"u","controller-uid":"u","job-name":"j"}}}}}`,
			`{"metadata":{"name":"j","labels":{"arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"spec":{"template":{"metadata":{"labels":{"job-name":"j"}}}}}`},
		{"job manual selector", "batch", "jobs",
			`{"metadata":{"name":"j"},"spec":{"manualSelector":true,"selector":{"matchLabels":{"a":"b"}}}}`,
			`{"metadata":{"name":"j","labels":{"arca.io/recovery-point":"rp","arca.io/restore":"r1"}},"spec":{"manualSelector":true,"selector":{"matchLabels":{"a":"b"}}}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := obj(t, tc.in)
			PrepareObject(tc.group, tc.resource, in, crit, "rp", "r1")
			if want := obj(t, tc.want); !reflect.DeepEqual(in, want) {
				got, _ := json.Marshal(in)
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestTiers(t *testing.T) {
	order := []string{"customresourcedefinitions.apiextensions.k8s.io", "namespaces", "storageclasses.storage.k8s.io", "persistentvolumes",
		"persistentvolumeclaims", "clusterroles.rbac.authorization.k8s.io", "serviceaccounts", "rolebindings.rbac.authorization.k8s.io",
		"secrets", "limitranges", "deployments.apps", "validatingwebhookconfigurations.admissionregistration.k8s.io"}
	for i := 1; i < len(order); i++ {
		if TierOf(order[i-1]) >= TierOf(order[i]) {
			t.Errorf("%s (tier %d) not before %s (tier %d)", order[i-1], TierOf(order[i-1]), order[i], TierOf(order[i]))
		}
	}
	if TierOf("widgets.example.com") != TierWorkloads {
		t.Error("custom resources belong to the workload tier")
	}
}
