// Package client is a small Go client of the vault API, used by the CLI
// and the API tests.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/arca-backup/arca/api/v1alpha1"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/service"
	"github.com/arca-backup/arca/internal/vault/store"
)

// Client talks to one vault.
type Client struct {
	BaseURL string // https://host:port
	Token   string
	HTTP    *http.Client
}

// TLSOptions choose how the vault's certificate is verified.
type TLSOptions struct {
	CAFile             string // PEM file to trust (e.g. the vault's self-signed tls.crt)
	InsecureSkipVerify bool
}

// New returns a client. With no CA file the system roots are used.
func New(baseURL, token string, o TLSOptions) (*Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // explicit user opt-in
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: &http.Client{Transport: tr, Timeout: time.Minute}}, nil
}

// Error is an API error response.
type Error struct {
	Status  int                  `json:"-"`
	Code    string               `json:"code"`
	Message string               `json:"message"`
	Details []*policy.FieldError `json:"details,omitempty"`
	Action  string               `json:"action,omitempty"` // 403: the missing action
	Scope   string               `json:"scope,omitempty"`  // 403: where it was needed
}

func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message) }

// Response carries what callers may need besides the body.
type Response struct {
	Status int
	ETag   string
	// Location names what a request created: the record, or the job that
	// a long operation queued.
	Location string
}

// Do sends one request. in (if not nil) is sent as JSON; out (if not nil)
// receives the JSON response. ifMatch, when set, is sent as If-Match.
func (c *Client) Do(ctx context.Context, method, path string, in, out any, ifMatch string) (*Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r := &Response{Status: resp.StatusCode, ETag: resp.Header.Get("ETag"), Location: resp.Header.Get("Location")}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return r, err
	}
	if resp.StatusCode >= 400 {
		var env struct {
			Error *Error `json:"error"`
		}
		if json.Unmarshal(data, &env) == nil && env.Error != nil {
			env.Error.Status = resp.StatusCode
			return r, env.Error
		}
		return r, &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(data))}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return r, fmt.Errorf("decode %s %s response: %w", method, path, err)
		}
	}
	return r, nil
}

func esc(s string) string { return url.PathEscape(s) }

// etagOf reads the record at path and returns its ETag: the If-Match that
// every update and delete sends (the vault answers 428 without one), so
// that a change made by someone else in between fails with 412 instead of
// being overwritten.
func (c *Client) etagOf(ctx context.Context, path string) (string, error) {
	r, err := c.Do(ctx, "GET", path, nil, nil, "")
	if err != nil {
		return "", err
	}
	if r.ETag == "" {
		return "", fmt.Errorf("GET %s: the vault sent no ETag", path)
	}
	return r.ETag, nil
}

// update sends a write to the record at path with the ETag it has now.
func (c *Client) update(ctx context.Context, method, path, record string, in, out any) (*Response, error) {
	tag, err := c.etagOf(ctx, record)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, method, path, in, out, tag)
}

type list[T any] struct {
	Items []T `json:"items"`
}

// ListVaults lists vaults.
func (c *Client) ListVaults(ctx context.Context) ([]*store.Vault, error) {
	var l list[*store.Vault]
	_, err := c.Do(ctx, "GET", "/api/v1/vaults", nil, &l, "")
	return l.Items, err
}

// CreateVault creates a vault.
func (c *Client) CreateVault(ctx context.Context, name, description string) (*store.Vault, error) {
	var v store.Vault
	_, err := c.Do(ctx, "POST", "/api/v1/vaults", map[string]string{"name": name, "description": description}, &v, "")
	return &v, err
}

// GetVault shows a vault.
func (c *Client) GetVault(ctx context.Context, name string) (*store.Vault, error) {
	var v store.Vault
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(name), nil, &v, "")
	return &v, err
}

// DeleteVault deletes an empty vault.
func (c *Client) DeleteVault(ctx context.Context, name string) error {
	p := "/api/v1/vaults/" + esc(name)
	_, err := c.update(ctx, "DELETE", p, p, nil, nil)
	return err
}

// PolicyInput is the body of policy create and update.
type PolicyInput struct {
	Name      string               `json:"name,omitempty"`
	Schedule  string               `json:"schedule"`
	Retention policy.RetentionSpec `json:"retention"`
	// CopyTo names the secondary storage location of vault-tier points.
	CopyTo string `json:"copyTo,omitempty"`
	// Verify: daily, weekly or monthly scheduled verification.
	Verify string `json:"verify,omitempty"`
}

// CreatePolicy creates a backup policy in a vault.
func (c *Client) CreatePolicy(ctx context.Context, vault string, in PolicyInput) (*store.Policy, error) {
	var p store.Policy
	_, err := c.Do(ctx, "POST", "/api/v1/vaults/"+esc(vault)+"/policies", in, &p, "")
	return &p, err
}

// ListPolicies lists a vault's policies.
func (c *Client) ListPolicies(ctx context.Context, vault string) ([]*store.Policy, error) {
	var l list[*store.Policy]
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/policies", nil, &l, "")
	return l.Items, err
}

// GetPolicy shows a policy.
func (c *Client) GetPolicy(ctx context.Context, vault, name string) (*store.Policy, error) {
	var p store.Policy
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/policies/"+esc(name), nil, &p, "")
	return &p, err
}

// DeletePolicy deletes a policy no instance uses.
func (c *Client) DeletePolicy(ctx context.Context, vault, name string) error {
	p := "/api/v1/vaults/" + esc(vault) + "/policies/" + esc(name)
	_, err := c.update(ctx, "DELETE", p, p, nil, nil)
	return err
}

// InstanceInput is the body of instance create and update.
type InstanceInput struct {
	Name             string          `json:"name,omitempty"`
	Cluster          string          `json:"cluster,omitempty"`
	Policy           string          `json:"policy"`
	Config           json.RawMessage `json:"backupConfiguration,omitempty"`
	StorageLocation  string          `json:"storageLocation"`
	SnapshotLocation string          `json:"snapshotLocation,omitempty"`
	// SkipValidation creates without the vault's prerequisite checks.
	SkipValidation bool `json:"-"`
}

func instancePath(vault, name string) string {
	return "/api/v1/vaults/" + esc(vault) + "/instances/" + esc(name)
}

// CreateInstance configures protection of a cluster.
func (c *Client) CreateInstance(ctx context.Context, vault string, in InstanceInput) (*store.Instance, error) {
	var out store.Instance
	path := "/api/v1/vaults/" + esc(vault) + "/instances"
	if in.SkipValidation {
		path += "?skipValidation=true"
	}
	_, err := c.Do(ctx, "POST", path, in, &out, "")
	return &out, err
}

// UpdateInstance replaces an instance's policy, configuration and
// locations; ifMatch is the ETag it was read with (empty: the ETag it has
// now).
func (c *Client) UpdateInstance(ctx context.Context, vault, name string, in InstanceInput, ifMatch string) (*store.Instance, error) {
	var out store.Instance
	var err error
	if ifMatch == "" {
		_, err = c.update(ctx, "PUT", instancePath(vault, name), instancePath(vault, name), in, &out)
	} else {
		_, err = c.Do(ctx, "PUT", instancePath(vault, name), in, &out, ifMatch)
	}
	return &out, err
}

// ListInstances lists a vault's backup instances.
func (c *Client) ListInstances(ctx context.Context, vault string) ([]*store.Instance, error) {
	var l list[*store.Instance]
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/instances", nil, &l, "")
	return l.Items, err
}

// GetInstance shows an instance and returns its ETag.
func (c *Client) GetInstance(ctx context.Context, vault, name string) (*store.Instance, string, error) {
	var out store.Instance
	r, err := c.Do(ctx, "GET", instancePath(vault, name), nil, &out, "")
	if err != nil {
		return nil, "", err
	}
	return &out, r.ETag, nil
}

// DeleteInstance deletes a stopped instance without recovery points.
//
// With deleteData the instance's recovery points are deleted first, by a
// job of the job runner that then deletes the instance; the job's path is
// returned.
func (c *Client) DeleteInstance(ctx context.Context, vault, name string, deleteData bool) (string, error) {
	path := instancePath(vault, name)
	if deleteData {
		path += "?deleteData=true"
	}
	resp, err := c.update(ctx, "DELETE", path, instancePath(vault, name), nil, nil)
	if err != nil || resp.Status != http.StatusAccepted {
		return "", err
	}
	return resp.Location, nil
}

// StopProtection stops protection with a mode: retain-forever,
// retain-per-policy or delete-data.
//
// With delete-data the deletion runs as a job of the job runner; its path
// (/api/v1/vaults/V/jobs/ID) is returned too, empty for the other modes.
func (c *Client) StopProtection(ctx context.Context, vault, name, mode string) (*store.Instance, string, error) {
	var out store.Instance
	resp, err := c.update(ctx, "POST", instancePath(vault, name)+"/stop-protection", instancePath(vault, name), map[string]string{"mode": mode}, &out)
	if err != nil {
		return nil, "", err
	}
	job := ""
	if resp.Status == http.StatusAccepted {
		job = resp.Location
	}
	return &out, job, nil
}

// ResumeProtection resumes scheduled backups.
func (c *Client) ResumeProtection(ctx context.Context, vault, name string) (*store.Instance, error) {
	var out store.Instance
	_, err := c.update(ctx, "POST", instancePath(vault, name)+"/resume-protection", instancePath(vault, name), nil, &out)
	return &out, err
}

// BackupNow queues an on-demand backup; retention is an optional ISO 8601
// duration.
func (c *Client) BackupNow(ctx context.Context, vault, instance, retention string) (*store.Job, error) {
	return c.BackupNowWith(ctx, vault, instance, map[string]any{"retention": retention})
}

// BackupNowWith queues an on-demand backup with the given parameters
// (jobs.BackupParams: retention, vaultTier).
func (c *Client) BackupNowWith(ctx context.Context, vault, instance string, params map[string]any) (*store.Job, error) {
	var out store.Job
	_, err := c.Do(ctx, "POST", instancePath(vault, instance)+"/backup", params, &out, "")
	return &out, err
}

// ListRecoveryPoints lists recovery points, oldest first.
func (c *Client) ListRecoveryPoints(ctx context.Context, vault, instance string) ([]*store.RecoveryPoint, error) {
	var l list[*store.RecoveryPoint]
	q := ""
	if instance != "" {
		q = "?instance=" + url.QueryEscape(instance)
	}
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/recovery-points"+q, nil, &l, "")
	return l.Items, err
}

// GetRecoveryPoint shows a recovery point.
func (c *Client) GetRecoveryPoint(ctx context.Context, vault, id string) (*store.RecoveryPoint, error) {
	var out store.RecoveryPoint
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/recovery-points/"+esc(id), nil, &out, "")
	return &out, err
}

// RestoreInput is the body of a restore.
type RestoreInput struct {
	RecoveryPoint string          `json:"recoveryPoint"`
	TargetCluster string          `json:"targetCluster"`
	Criteria      json.RawMessage `json:"restoreCriteria,omitempty"`
}

// StartRestore queues a restore job.
func (c *Client) StartRestore(ctx context.Context, vault string, in RestoreInput) (*store.Job, error) {
	var out store.Job
	_, err := c.Do(ctx, "POST", "/api/v1/vaults/"+esc(vault)+"/restores", in, &out, "")
	return &out, err
}

// VerificationInput asks for a verification of a recovery point.
type VerificationInput struct {
	TargetCluster   string          `json:"targetCluster"`
	ReadDataPercent int             `json:"readDataPercent,omitempty"`
	SkipVolumes     bool            `json:"skipVolumes,omitempty"`
	Criteria        json.RawMessage `json:"restoreCriteria,omitempty"`
}

// VerifyRecoveryPoint queues a Verification job for recovery point id.
func (c *Client) VerifyRecoveryPoint(ctx context.Context, vault, id string, in VerificationInput) (*store.Job, error) {
	var out store.Job
	_, err := c.Do(ctx, "POST", "/api/v1/vaults/"+esc(vault)+"/recovery-points/"+esc(id)+"/verify", in, &out, "")
	return &out, err
}

// JobFilter selects jobs in ListJobs.
type JobFilter struct {
	Instance, Type, State string
	Limit                 int
}

// ListJobs lists jobs, newest first.
func (c *Client) ListJobs(ctx context.Context, vault string, f JobFilter) ([]*store.Job, error) {
	q := url.Values{}
	for k, v := range map[string]string{"instance": f.Instance, "type": f.Type, "state": f.State} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", fmt.Sprint(f.Limit))
	}
	path := "/api/v1/vaults/" + esc(vault) + "/jobs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var l list[*store.Job]
	_, err := c.Do(ctx, "GET", path, nil, &l, "")
	return l.Items, err
}

// GetJob shows a job.
func (c *Client) GetJob(ctx context.Context, vault, id string) (*store.Job, error) {
	var out store.Job
	_, err := c.Do(ctx, "GET", "/api/v1/vaults/"+esc(vault)+"/jobs/"+esc(id), nil, &out, "")
	return &out, err
}

// CancelJob cancels a Queued or InProgress job.
func (c *Client) CancelJob(ctx context.Context, vault, id string) (*store.Job, error) {
	var out store.Job
	_, err := c.Do(ctx, "POST", "/api/v1/vaults/"+esc(vault)+"/jobs/"+esc(id)+"/cancel", nil, &out, "")
	return &out, err
}

// SyncRecoveryPoints re-creates the vault's records of an instance's
// recovery points found in the repository.
func (c *Client) SyncRecoveryPoints(ctx context.Context, vault, instance string, pts []service.SyncPoint) (*service.SyncResult, error) {
	if pts == nil {
		pts = []service.SyncPoint{}
	}
	var out service.SyncResult
	_, err := c.Do(ctx, "POST", instancePath(vault, instance)+"/sync", map[string]any{"recoveryPoints": pts}, &out, "")
	return &out, err
}

// What a recovery point holds: the instance's cluster extension answers
// (service.RecoveryPointContents, RecoveryPointDiff, RecoveryPointVolumes,
// RecoveryPointFiles).

func pointPath(vault, id string) string {
	return "/api/v1/vaults/" + esc(vault) + "/recovery-points/" + esc(id)
}

func queryString(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" && kv[i+1] != "0" && kv[i+1] != "false" {
			v.Set(kv[i], kv[i+1])
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// RecoveryPointContents browses a point: namespaces, types of a namespace,
// objects of a type, or one object's YAML.
func (c *Client) RecoveryPointContents(ctx context.Context, vault, id string, req service.ContentsRequest) (*v1alpha1.RecoveryPointQueryResult, error) {
	var out v1alpha1.RecoveryPointQueryResult
	_, err := c.Do(ctx, "GET", pointPath(vault, id)+"/contents"+queryString("namespace", req.Namespace, "type", req.Type, "name", req.Name,
		"limit", strconv.Itoa(req.Limit), "continue", req.Continue), nil, &out, "")
	return &out, err
}

// RecoveryPointDiff compares a point with another (req.Against) or the live cluster (req.Live).
func (c *Client) RecoveryPointDiff(ctx context.Context, vault, id string, req service.DiffRequest) (*v1alpha1.RecoveryPointQueryResult, error) {
	var out v1alpha1.RecoveryPointQueryResult
	_, err := c.Do(ctx, "GET", pointPath(vault, id)+"/diff"+queryString("against", req.Against, "live", strconv.FormatBool(req.Live),
		"namespace", req.Namespace, "type", req.Type, "name", req.Name, "limit", strconv.Itoa(req.Limit), "continue", req.Continue), nil, &out, "")
	return &out, err
}

// RecoveryPointVolumes lists a point's volumes: snapshot records and
// vault-tier data per claim.
func (c *Client) RecoveryPointVolumes(ctx context.Context, vault, id string) (*v1alpha1.RecoveryPointQueryResult, error) {
	var out v1alpha1.RecoveryPointQueryResult
	_, err := c.Do(ctx, "GET", pointPath(vault, id)+"/volumes", nil, &out, "")
	return &out, err
}

// RecoveryPointFiles lists a directory of a vault-tier volume, or with
// req.Read returns a window of one file's content.
func (c *Client) RecoveryPointFiles(ctx context.Context, vault, id string, req service.FilesRequest) (*v1alpha1.RecoveryPointQueryResult, error) {
	var out v1alpha1.RecoveryPointQueryResult
	p := pointPath(vault, id) + "/files"
	if req.Read {
		p += "/content"
	}
	_, err := c.Do(ctx, "GET", p+queryString("volume", req.Volume, "path", req.Path, "offset", strconv.FormatInt(req.Offset, 10),
		"length", strconv.FormatInt(req.Length, 10), "limit", strconv.Itoa(req.Limit), "continue", req.Continue), nil, &out, "")
	return &out, err
}
