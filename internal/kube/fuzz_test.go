package kube

import (
	"encoding/json"
	"testing"
)

// Objects and references are decoded from API server lists and from
// recovery points. The decoders must never panic, and the engine's helpers
// that read a decoded object must not either.
func FuzzDecodeObject(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"n","labels":{"a":"b"},"ownerReferences":[{"kind":"ReplicaSet","name":"r","controller":true}]},"type":"kubernetes.io/service-account-token"}`))
	f.Add([]byte(`{"metadata":{"name":"kube-root-ca.crt","namespace":"x"},"type":{"nested":true}}`))
	f.Add([]byte(`{"metadata":null,"type":7}`))
	f.Add([]byte(`[]`))
	resources := []Resource{
		{Group: "", Version: "v1", Resource: "secrets", Kind: "Secret", Namespaced: true},
		{Group: "", Version: "v1", Resource: "configmaps", Kind: "ConfigMap", Namespaced: true},
		{Group: "", Version: "v1", Resource: "pods", Kind: "Pod", Namespaced: true},
		{Group: "events.k8s.io", Version: "v1", Resource: "events", Kind: "Event", Namespaced: true},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeObject(data)
		if err != nil {
			return
		}
		_ = o.TypeString()
		for _, r := range resources {
			ExcludedObject(r.Group, r.Resource, o)
			out := WithTypeMeta(data, o, r)
			if json.Valid(data) && !json.Valid(out) {
				t.Fatalf("WithTypeMeta turned valid JSON %q into invalid %q", data, out)
			}
		}
	})
}

func FuzzDecodeReferences(f *testing.F) {
	f.Add([]byte(`{"spec":{"volumeName":"pv-1","storageClassName":"standard"}}`))
	f.Add([]byte(`{"roleRef":{"kind":"ClusterRole","name":"view"},"subjects":[{"kind":"ServiceAccount","name":"a","namespace":"b"},null]}`))
	f.Add([]byte(`{"spec":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeReferences(data)
		if (r == nil) == (err == nil) {
			t.Fatalf("DecodeReferences(%q) = %v, %v: want exactly one of references and an error", data, r, err)
		}
	})
}
