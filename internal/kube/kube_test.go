package kube

import (
	"encoding/json"
	"testing"
)

func TestWithTypeMeta(t *testing.T) {
	r := Resource{Group: "apps", Version: "v1", Resource: "deployments", Kind: "Deployment"}
	item := []byte(`{"metadata":{"name":"x"},"spec":{}}`)
	o, _ := DecodeObject(item)
	out := WithTypeMeta(item, o, r)
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil || m["apiVersion"] != "apps/v1" || m["kind"] != "Deployment" {
		t.Fatalf("%s (%v)", out, err)
	}
	cr := []byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"}}`)
	o, _ = DecodeObject(cr)
	if string(WithTypeMeta(cr, o, r)) != string(cr) {
		t.Error("custom resource items already carry their type")
	}
	empty := []byte(`{}`)
	o, _ = DecodeObject(empty)
	if string(WithTypeMeta(empty, o, r)) != `{"apiVersion":"apps/v1","kind":"Deployment"}` {
		t.Errorf("%s", WithTypeMeta(empty, o, r))
	}
}

func TestExcludedObject(t *testing.T) {
	cases := []struct {
		group, resource, obj string
		excluded             bool
	}{
		{"", "secrets", `{"metadata":{"name":"t"},"type":"kubernetes.io/service-account-token"}`, true},
		{"", "secrets", `{"metadata":{"name":"t"},"type":"Opaque"}`, false},
		{"", "configmaps", `{"metadata":{"name":"kube-root-ca.crt","namespace":"a"}}`, true},
		{"", "serviceaccounts", `{"metadata":{"name":"default","namespace":"a"}}`, true},
		{"", "serviceaccounts", `{"metadata":{"name":"default","namespace":"a"},"imagePullSecrets":[{"name":"reg"}]}`, false},
		{"", "services", `{"metadata":{"name":"kubernetes","namespace":"default"}}`, true},
		{"rbac.authorization.k8s.io", "clusterroles", `{"metadata":{"name":"view","labels":{"kubernetes.io/bootstrapping":"rbac-defaults"}}}`, true},
		{"rbac.authorization.k8s.io", "clusterroles", `{"metadata":{"name":"mine"}}`, false},
		{"scheduling.k8s.io", "priorityclasses", `{"metadata":{"name":"system-node-critical"}}`, true},
		{"example.com", "widgets", `{"metadata":{"name":"w"},"type":{"nested":true}}`, false},
	}
	for _, tc := range cases {
		o, err := DecodeObject([]byte(tc.obj))
		if err != nil {
			t.Fatalf("%s: %v", tc.obj, err)
		}
		if _, got := ExcludedObject(tc.group, tc.resource, o); got != tc.excluded {
			t.Errorf("%s %s: excluded %v, want %v", tc.resource, tc.obj, got, tc.excluded)
		}
	}
	for _, gr := range []string{"events", "endpointslices.discovery.k8s.io", "leases.coordination.k8s.io", "ipaddresses.networking.k8s.io"} {
		if _, ok := ExcludedTypes[gr]; !ok {
			t.Errorf("%s not excluded", gr)
		}
	}
}
