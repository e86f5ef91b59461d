// Package kubetest helps engine tests put manifests into a real API server
// and take them out again. It takes a *rest.Config and knows nothing of how
// the server was started.
package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Client applies and deletes manifests.
type Client struct {
	Dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	mu     sync.Mutex
}

// New returns a client for cfg.
func New(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{Dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// Decode splits a multi-document YAML or JSON stream into objects.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// Mapping returns the REST mapping of obj's kind, refreshing discovery (for
// CRDs just created) for up to 30 seconds.
func (c *Client) Mapping(obj *unstructured.Unstructured) (*meta.RESTMapping, error) {
	gvk := obj.GroupVersionKind()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err == nil {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("map %s: %w", gvk, err)
		}
		c.mu.Lock()
		c.mapper.Reset()
		c.mu.Unlock()
		time.Sleep(200 * time.Millisecond)
	}
}

// Resource returns the dynamic client for obj, with defaultNS put on
// namespaced objects that have no namespace.
func (c *Client) Resource(obj *unstructured.Unstructured, defaultNS string) (dynamic.ResourceInterface, error) {
	m, err := c.Mapping(obj)
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if obj.GetNamespace() == "" {
			obj.SetNamespace(defaultNS)
		}
		return c.Dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return c.Dyn.Resource(m.Resource), nil
}

// Apply creates the objects in order (CRDs become usable as they are
// created; namespaces are created for namespaced objects that need them).
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured, defaultNS string) error {
	for _, obj := range objs {
		ri, err := c.Resource(obj, defaultNS)
		if err != nil {
			return err
		}
		if ns := obj.GetNamespace(); ns != "" {
			if err := c.EnsureNamespace(ctx, ns); err != nil {
				return err
			}
		}
		if _, err := ri.Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		if obj.GetKind() == "CustomResourceDefinition" {
			if err := c.WaitEstablished(ctx, obj.GetName()); err != nil {
				return err
			}
		}
	}
	return nil
}

// EnsureNamespace creates namespace ns if it does not exist.
func (c *Client) EnsureNamespace(ctx context.Context, ns string) error {
	nsRes := c.Dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "namespaces"})
	if _, err := nsRes.Get(ctx, ns, metav1.GetOptions{}); err == nil {
		return nil
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	if _, err := nsRes.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// establishTimeout bounds WaitEstablished: the API server names a CRD
// Established within seconds on a quiet machine, much later at load 30.
const establishTimeout = 2 * time.Minute

// WaitEstablished waits until CRD name is Established.
func (c *Client) WaitEstablished(ctx context.Context, name string) error {
	res := c.Dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	deadline := time.Now().Add(establishTimeout)
	for time.Now().Before(deadline) {
		crd, err := res.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, cd := range conds {
				cm, _ := cd.(map[string]any)
				if cm["type"] == "Established" && cm["status"] == "True" {
					return nil
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("CRD %s not Established after %s", name, establishTimeout)
}

// DeleteAndWait deletes the objects (foreground for namespaces' contents)
// and waits until every one is gone.
func (c *Client) DeleteAndWait(ctx context.Context, objs []*unstructured.Unstructured, defaultNS string, timeout time.Duration) error {
	type target struct {
		ri   dynamic.ResourceInterface
		name string
		desc string
	}
	var targets []target
	for _, obj := range objs {
		ri, err := c.Resource(obj, defaultNS)
		if err != nil {
			if strings.Contains(err.Error(), "no matches for kind") {
				continue // its CRD is already gone
			}
			return err
		}
		bg := metav1.DeletePropagationBackground
		if err := ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		targets = append(targets, target{ri, obj.GetName(), obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()})
	}
	deadline := time.Now().Add(timeout)
	for _, t := range targets {
		for {
			_, err := t.ri.Get(ctx, t.name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err != nil && strings.Contains(err.Error(), "the server could not find the requested resource")) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s still exists after %s", t.desc, timeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}
