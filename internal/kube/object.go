package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// Object is what the engine reads of an object without decoding all of it:
// the backup keeps every object as the API server's JSON and looks only at
// these fields.
type Object struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	// Fields some exclusion rules look at; raw because custom resources may
	// give the same names other shapes.
	Type                         json.RawMessage `json:"type"`
	ImagePullSecrets             json.RawMessage `json:"imagePullSecrets"`
	Secrets                      json.RawMessage `json:"secrets"`
	AutomountServiceAccountToken json.RawMessage `json:"automountServiceAccountToken"`
}

// ObjectMeta is the part of metadata the engine reads.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func (o *Object) GetName() string              { return o.Metadata.Name }
func (o *Object) GetNamespace() string         { return o.Metadata.Namespace }
func (o *Object) GetLabels() map[string]string { return o.Metadata.Labels }

// TypeString is the `type` field when it is a string (Secrets).
func (o *Object) TypeString() string {
	var s string
	if len(o.Type) > 0 && json.Unmarshal(o.Type, &s) == nil {
		return s
	}
	return ""
}

// DecodeObject reads the engine's fields of one object.
func DecodeObject(data []byte) (*Object, error) {
	o := &Object{}
	if err := json.Unmarshal(data, o); err != nil {
		return nil, err
	}
	return o, nil
}

// References are the names of other objects that an object refers to, for
// the types whose references the backup follows.
type References struct {
	Spec struct {
		VolumeName              string `json:"volumeName"`
		StorageClassName        string `json:"storageClassName"`
		IngressClassName        string `json:"ingressClassName"`
		VolumeSnapshotClassName string `json:"volumeSnapshotClassName"`
	} `json:"spec"`
	RoleRef struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"roleRef"`
	Subjects []struct {
		Kind      string `json:"kind"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"subjects"`
}

// DecodeReferences reads the references of a built-in object (PVC, PV,
// binding, ingress, volume snapshot).
func DecodeReferences(data []byte) (*References, error) {
	r := &References{}
	if err := json.Unmarshal(data, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Page is one page of a list: the items as the API server's JSON.
type Page struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// Lister lists resources as raw JSON pages, without decoding objects into
// maps: the backup stores the server's JSON as it is.
type Lister struct {
	client  *http.Client
	host    string
	limiter flowcontrol.RateLimiter
}

// NewLister returns a lister for cfg. Response compression is turned off:
// on a local network (the extension runs in the cluster) gzip costs the API
// server more CPU than it saves.
func NewLister(cfg *rest.Config) (*Lister, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.DisableCompression = true
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	qps, burst := cfg.QPS, cfg.Burst
	if qps <= 0 {
		qps, burst = DefaultQPS, DefaultBurst
	}
	u, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, err
	}
	return &Lister{client: hc, host: strings.TrimRight(u.String(), "/"), limiter: flowcontrol.NewTokenBucketRateLimiter(qps, burst)}, nil
}

// ListOptions select one page.
type ListOptions struct {
	Namespace     string // empty: all namespaces (or a cluster-scoped type)
	Limit         int64
	Continue      string
	LabelSelector string
}

// List fetches one page of resource r. Errors from the API server are
// *apierrors.StatusError, so apierrors.IsForbidden and friends work.
func (l *Lister) List(ctx context.Context, r Resource, o ListOptions) (*Page, error) {
	path := "/apis/" + r.Group + "/" + r.Version
	if r.Group == "" {
		path = "/api/" + r.Version
	}
	if o.Namespace != "" {
		path += "/namespaces/" + url.PathEscape(o.Namespace)
	}
	path += "/" + r.Resource
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.FormatInt(o.Limit, 10))
	}
	if o.Continue != "" {
		q.Set("continue", o.Continue)
	}
	if o.LabelSelector != "" {
		q.Set("labelSelector", o.LabelSelector)
	}
	if err := l.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.host+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var st metav1.Status
		if json.Unmarshal(body, &st) == nil && st.Kind == "Status" {
			return nil, &apierrors.StatusError{ErrStatus: st}
		}
		return nil, apierrors.NewGenericServerResponse(resp.StatusCode, "list", r.GVR().GroupResource(), "", string(body), 0, false)
	}
	p := &Page{}
	if err := json.NewDecoder(resp.Body).Decode(p); err != nil {
		return nil, fmt.Errorf("decode list of %s: %w", r.GroupResource(), err)
	}
	return p, nil
}

// WithTypeMeta returns item with apiVersion and kind set: the API server
// leaves them out of the items of built-in lists. The server's JSON is
// otherwise kept byte for byte, so an unchanged object yields identical
// bytes on every backup.
func WithTypeMeta(item []byte, o *Object, r Resource) []byte {
	if o.APIVersion != "" && o.Kind != "" {
		return item
	}
	if len(item) < 2 || item[0] != '{' {
		return item
	}
	prefix := `{"apiVersion":` + strconv.Quote(r.APIVersion()) + `,"kind":` + strconv.Quote(r.Kind)
	out := make([]byte, 0, len(prefix)+len(item)+1)
	out = append(out, prefix...)
	// The server's JSON is compact, but an object read from elsewhere may
	// have space before its first member or be empty: `{ }`.
	if rest := bytes.TrimLeft(item[1:], " \t\r\n"); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, item[1:]...)
}
