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
	"strings"
	"time"

	"github.com/arca-backup/arca/internal/vault/policy"
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
}

func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message) }

// Response carries what callers may need besides the body.
type Response struct {
	Status int
	ETag   string
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
	r := &Response{Status: resp.StatusCode, ETag: resp.Header.Get("ETag")}
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
	_, err := c.Do(ctx, "DELETE", "/api/v1/vaults/"+esc(name), nil, nil, "")
	return err
}

// PolicyInput is the body of policy create and update.
type PolicyInput struct {
	Name      string               `json:"name,omitempty"`
	Schedule  string               `json:"schedule"`
	Retention policy.RetentionSpec `json:"retention"`
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
	_, err := c.Do(ctx, "DELETE", "/api/v1/vaults/"+esc(vault)+"/policies/"+esc(name), nil, nil, "")
	return err
}
