// Package azure stores a repository in an Azure Blob Storage container, under
// an optional prefix, with the official Azure SDK for Go.
//
// Authentication: shared key (account name and key), a SAS token (account
// or container scope, needs read, add/create, write, delete and list
// permissions), or a connection string. Blobs are block blobs named
// <prefix>/<storage.Handle.Key()>.
//
// Write-once: small files are written with one Put Blob, large ones as staged
// blocks and one Put Block List; both carry If-None-Match: *, so the service
// itself refuses to replace an existing blob, atomically, also between
// concurrent writers (409 BlobAlreadyExists / 412 ConditionNotMet become
// storage.ErrExist). Staged blocks are invisible until the commit, so a
// failed Save leaves nothing readable behind (the service drops uncommitted
// blocks after a week).
package azure

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/internal/exact"
)

var _ storage.Backend = (*Backend)(nil)

// Config says where the repository lives and how to authenticate. Exactly
// one of AccountKey, SASToken and ConnectionString must be set.
type Config struct {
	Account   string
	Container string
	// Prefix is a path inside the container ("" or "a/b"; no leading or
	// trailing slash needed).
	Prefix string
	// Endpoint is the blob service URL. Default:
	// https://<Account>.blob.core.windows.net. For Azurite:
	// http://127.0.0.1:10000/devstoreaccount1. A connection string brings
	// its own endpoint.
	Endpoint string

	AccountKey       string
	SASToken         string // with or without the leading "?"
	ConnectionString string

	// CreateContainer creates the container if it is missing (Open fails
	// with a permanent error otherwise).
	CreateContainer bool

	// BlockSize and Concurrency tune uploads of large files (defaults 4 MiB
	// and 4: at most 16 MiB of buffers per Save). Files up to BlockSize are
	// sent in one request.
	BlockSize   int64
	Concurrency int
	// SDKRetries is the number of retries the SDK makes per request
	// (default 1; negative: none). Arca's retry decorator retries whole
	// operations on top of this.
	SDKRetries int
}

// Backend is a container (and prefix) in Azure Blob Storage.
type Backend struct {
	cfg       Config
	client    *container.Client
	prefix    string // "" or "a/b/"
	location  string
	blockSize int64
	conc      int
}

// Open connects to the container and checks that it exists and that the
// credentials may list it, so that wrong settings fail here with a clear
// message rather than on the first write.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Container == "" {
		return nil, fmt.Errorf("azure: no container given: %w", storage.ErrPermanent)
	}
	n := 0
	for _, s := range []string{cfg.AccountKey, cfg.SASToken, cfg.ConnectionString} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("azure: give exactly one of an account key, a SAS token or a connection string (got %d): %w", n, storage.ErrPermanent)
	}
	opts := &container.ClientOptions{}
	retries := cfg.SDKRetries
	if retries == 0 {
		retries = 1
	}
	opts.Retry = policy.RetryOptions{MaxRetries: int32(retries), RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 2 * time.Second, TryTimeout: 5 * time.Minute}

	endpoint := strings.TrimSuffix(cfg.Endpoint, "/")
	if endpoint == "" && cfg.ConnectionString == "" {
		if cfg.Account == "" {
			return nil, fmt.Errorf("azure: no storage account given: %w", storage.ErrPermanent)
		}
		endpoint = "https://" + cfg.Account + ".blob.core.windows.net"
	}
	containerURL := endpoint + "/" + url.PathEscape(cfg.Container)

	var client *container.Client
	var err error
	switch {
	case cfg.AccountKey != "":
		if cfg.Account == "" {
			return nil, fmt.Errorf("azure: an account key needs the account name: %w", storage.ErrPermanent)
		}
		cred, cerr := container.NewSharedKeyCredential(cfg.Account, cfg.AccountKey)
		if cerr != nil {
			return nil, fmt.Errorf("azure: invalid account key for %s (it must be base64, as shown in the portal under Access keys): %v: %w", cfg.Account, cerr, storage.ErrPermanent)
		}
		client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, opts)
	case cfg.SASToken != "":
		client, err = container.NewClientWithNoCredential(containerURL+"?"+strings.TrimPrefix(cfg.SASToken, "?"), opts)
	default:
		client, err = container.NewClientFromConnectionString(cfg.ConnectionString, cfg.Container, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("azure: %v: %w", err, storage.ErrPermanent)
	}
	b := &Backend{cfg: cfg, client: client, blockSize: cfg.BlockSize, conc: cfg.Concurrency}
	if b.blockSize <= 0 {
		b.blockSize = 4 << 20
	}
	if b.conc <= 0 {
		b.conc = 4
	}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		b.prefix = p + "/"
	}
	account := cfg.Account
	if account == "" {
		account = accountFromURL(client.URL())
	}
	b.location = "azure://" + account + "/" + cfg.Container
	if b.prefix != "" {
		b.location += "/" + strings.TrimSuffix(b.prefix, "/")
	}

	if err := b.check(ctx); err != nil {
		if !(cfg.CreateContainer && bloberror.HasCode(err, bloberror.ContainerNotFound)) {
			return nil, b.mapErr("open", storage.Handle{}, err)
		}
		if _, err := client.Create(ctx, nil); err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
			return nil, b.mapErr("create container", storage.Handle{}, err)
		}
	}
	return b, nil
}

// accountFromURL guesses the account for messages: the first label of
// <account>.blob.core.windows.net, or the first path segment (Azurite).
func accountFromURL(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return "?"
	}
	if host, _, ok := strings.Cut(pu.Hostname(), "."); ok && strings.Contains(pu.Hostname(), ".blob.") {
		return host
	}
	seg, _, _ := strings.Cut(strings.TrimPrefix(pu.Path, "/"), "/")
	return seg
}

func (b *Backend) check(ctx context.Context) error {
	pager := b.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &b.prefix, MaxResults: ptr(int32(1))})
	_, err := pager.NextPage(ctx)
	return err
}

func ptr[T any](v T) *T { return &v }

func (b *Backend) Location() string { return b.location }
func (b *Backend) Close() error     { return nil }

func (b *Backend) blobName(h storage.Handle) string { return b.prefix + h.Key() }

var ifNoneMatchAny = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: ptr(azcore.ETagAny)}}

func (b *Backend) Save(ctx context.Context, h storage.Handle, size int64, rd io.Reader) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	bb := b.client.NewBlockBlobClient(b.blobName(h))
	in := exact.New(ctx, rd, size)
	var err error
	if size >= 0 && size <= b.blockSize {
		// One request; read first so that a bad input never reaches the
		// service.
		buf := make([]byte, 0, size)
		w := bytes.NewBuffer(buf)
		if _, rerr := io.Copy(w, in); rerr != nil {
			return fmt.Errorf("save %s: %w", h, rerr)
		}
		_, err = bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(w.Bytes())), &blockblob.UploadOptions{AccessConditions: ifNoneMatchAny})
	} else {
		_, err = bb.UploadStream(ctx, in, &blockblob.UploadStreamOptions{
			BlockSize:        b.blockSize,
			Concurrency:      b.conc,
			AccessConditions: ifNoneMatchAny,
		})
	}
	if err == nil {
		return nil
	}
	if rerr := in.Err(); rerr != nil {
		return fmt.Errorf("save %s: %w", h, rerr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("save %s: %w", h, ctx.Err())
	}
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
		return fmt.Errorf("save %s: %w", h, storage.ErrExist)
	}
	if bloberror.HasCode(err, bloberror.InvalidBlockList) {
		// A concurrent Save of the same name committed first and dropped
		// our staged blocks.
		if _, serr := bb.GetProperties(ctx, nil); serr == nil {
			return fmt.Errorf("save %s: %w", h, storage.ErrExist)
		}
	}
	return b.mapErr("save", h, err)
}

func (b *Backend) Load(ctx context.Context, h storage.Handle, length int, offset int64, fn func(rd io.Reader) error) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if length < 0 || offset < 0 {
		return fmt.Errorf("load %s: negative length %d or offset %d: %w", h, length, offset, storage.ErrPermanent)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	bc := b.client.NewBlobClient(b.blobName(h))
	resp, err := bc.DownloadStream(ctx, &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: offset, Count: int64(length)}})
	if bloberror.HasCode(err, bloberror.InvalidRange) {
		// Azure refuses a range that starts at the end; that one is a
		// valid, empty read.
		fi, serr := b.Stat(ctx, h)
		if serr != nil {
			return serr
		}
		if offset == fi.Size {
			return fn(bytes.NewReader(nil))
		}
		return fmt.Errorf("load %s: offset %d beyond the end of the %d-byte file: %w", h, offset, fi.Size, storage.ErrPermanent)
	}
	if err != nil {
		return b.mapErr("load", h, err)
	}
	defer resp.Body.Close()
	return fn(resp.Body)
}

func (b *Backend) Stat(ctx context.Context, h storage.Handle) (storage.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return storage.FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	props, err := b.client.NewBlobClient(b.blobName(h)).GetProperties(ctx, nil)
	if err != nil {
		return storage.FileInfo{}, b.mapErr("stat", h, err)
	}
	fi := storage.FileInfo{Name: h.Name}
	if props.ContentLength != nil {
		fi.Size = *props.ContentLength
	}
	if props.LastModified != nil {
		fi.ModTime = *props.LastModified
	}
	return fi, nil
}

func (b *Backend) Remove(ctx context.Context, h storage.Handle) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	_, err := b.client.NewBlobClient(b.blobName(h)).Delete(ctx, nil)
	if err != nil {
		return b.mapErr("remove", h, err)
	}
	return nil
}

func (b *Backend) List(ctx context.Context, t storage.FileType, fn func(storage.FileInfo) error) error {
	if err := t.Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if t == storage.ConfigFile {
		fi, err := b.Stat(ctx, storage.Handle{Type: t})
		if storage.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(fi)
	}
	prefix := b.prefix + string(t) + "/"
	pager := b.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("list %s: %w", t, ctx.Err())
			}
			return b.mapErr("list", storage.Handle{Type: t}, err)
		}
		for _, item := range page.Segment.BlobItems {
			if item.Name == nil {
				continue
			}
			rel := strings.TrimPrefix(*item.Name, prefix)
			name := rel
			if t == storage.PackFile {
				// data/<xx>/<name>
				shard, rest, ok := strings.Cut(rel, "/")
				if !ok || len(shard) != 2 || !strings.HasPrefix(rest, shard) {
					continue
				}
				name = rest
			}
			if name == "" || strings.Contains(name, "/") {
				continue // not ours
			}
			fi := storage.FileInfo{Name: name}
			if item.Properties != nil && item.Properties.ContentLength != nil {
				fi.Size = *item.Properties.ContentLength
			}
			if item.Properties != nil && item.Properties.LastModified != nil {
				fi.ModTime = *item.Properties.LastModified
			}
			if err := fn(fi); err != nil {
				return err
			}
		}
	}
	return nil
}

// mapErr classifies an SDK error. Errors not recognised as permanent stay
// transient (network errors, 5xx, throttling).
func (b *Backend) mapErr(op string, h storage.Handle, err error) error {
	what := op
	if h.Type != "" {
		what += " " + h.String()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("%s on %s: %w", what, b.location, err)
	}
	code := bloberror.Code(re.ErrorCode)
	switch {
	case code == bloberror.ContainerNotFound:
		return fmt.Errorf("%s: container %q does not exist in %s: create it, or let Arca create it: %w", what, b.cfg.Container, b.location, storage.ErrPermanent)
	case code == bloberror.BlobNotFound || (re.StatusCode == 404 && code == ""):
		// HEAD responses carry no error code.
		return fmt.Errorf("%s: %w", what, storage.ErrNotExist)
	case re.StatusCode == 401 || re.StatusCode == 403:
		return fmt.Errorf("%s on %s: access denied (HTTP %d %s): check the account key, SAS token (permissions and expiry) or connection string: %w",
			what, b.location, re.StatusCode, re.ErrorCode, storage.ErrPermanent)
	case re.StatusCode == 404:
		return fmt.Errorf("%s on %s: not found (HTTP 404 %s): check the account and endpoint: %w", what, b.location, re.ErrorCode, storage.ErrPermanent)
	case re.StatusCode == 408 || re.StatusCode == 429 || re.StatusCode >= 500:
		return fmt.Errorf("%s on %s: HTTP %d %s (transient)", what, b.location, re.StatusCode, re.ErrorCode)
	case re.StatusCode >= 400:
		return fmt.Errorf("%s on %s: HTTP %d %s: %w", what, b.location, re.StatusCode, re.ErrorCode, storage.ErrPermanent)
	}
	return fmt.Errorf("%s on %s: %w", what, b.location, err)
}
