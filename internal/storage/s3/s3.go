// Package s3 stores a repository in an S3 bucket (AWS S3, MinIO and other
// S3-compatible services), under an optional prefix, with minio-go.
//
// Objects are named <prefix>/<storage.Handle.Key()>.
//
// Write-once: Save first checks that the object does not exist, then writes
// it with If-None-Match: *. Files up to Config.SinglePutLimit (default 256
// MiB) go in one PUT, which AWS S3 (since 2024) and MinIO evaluate
// atomically: of two concurrent Saves of one name exactly one succeeds and
// the other gets storage.ErrExist. Larger files and files of unknown size
// use a multipart upload with the condition on CompleteMultipartUpload;
// AWS evaluates that atomically too, but MinIO (tested: the pinned
// 2026-02 build) lets two concurrent completions of one key both succeed, the
// later replacing the earlier. Services that ignore the header are left with
// the check before the write, the same race. Arca's packs, indexes and
// manifests are named by the hash of their content, so a lost race there
// replaces a file with the same bytes; locks are small (single PUT).
//
// Remove checks existence first too (S3 deletes of missing keys succeed), so
// a concurrent Remove of the same object may report success twice.
//
// Object Lock (Config.LockMode): every file but locks/ and index/ is
// written with a retention of that mode (GOVERNANCE or COMPLIANCE) until LockPeriod after
// it is written, by this process's clock. The bucket must have Object Lock
// enabled (and therefore versioning). Remove then deletes the object's
// current version by its version ID, which the service refuses while the
// retention lasts: Remove returns a *storage.RetainedError naming the date.
// A plain DELETE without a version ID, which anyone with delete permission
// may send, only adds a delete marker: the retained version stays and comes
// back when the marker is deleted. RetainUntil extends a file's retention
// (never shortens it). See docs/storage.md, Object Lock.
//
// Multipart uploads are only visible once completed; a failed Save aborts
// its upload. Uploads orphaned by a crash are invisible to Arca and should be
// expired by a bucket lifecycle rule (AbortIncompleteMultipartUpload).
package s3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/internal/exact"
)

var _ storage.Backend = (*Backend)(nil)

// Config says where the repository lives and how to authenticate.
type Config struct {
	// Endpoint is host[:port] of the S3 service (default s3.amazonaws.com).
	Endpoint string
	Bucket   string
	Prefix   string // "" or "a/b"
	Region   string // optional; discovered when empty

	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string // optional, for temporary credentials

	// DisableTLS talks plain HTTP (local MinIO). InsecureSkipVerify accepts
	// any server certificate (self-signed test setups only).
	DisableTLS         bool
	InsecureSkipVerify bool
	// PathStyle forces path-style bucket addressing (needed by most
	// S3-compatible services without wildcard DNS; MinIO and IP endpoints
	// get it automatically).
	PathStyle bool

	// CreateBucket creates the bucket if it is missing (Open fails with a
	// permanent error otherwise).
	CreateBucket bool

	// SinglePutLimit is the largest file sent in one PUT (default 256 MiB;
	// S3 allows 5 GiB). One PUT streams without buffering.
	SinglePutLimit int64
	// PartSize and Threads tune multipart uploads (files above
	// SinglePutLimit or of unknown size; defaults 16 MiB and 2: at most 32
	// MiB of buffers per Save).
	PartSize uint64
	Threads  uint
	// LockMode, when set, writes files under S3 Object Lock retention of
	// this mode: "GOVERNANCE" (users with s3:BypassGovernanceRetention may
	// still delete) or "COMPLIANCE" (nobody may, until the date). LockPeriod
	// is how long after it is written a file is retained; it must be
	// positive when LockMode is set. Lock files are never retained (they
	// are removed when released), nor index files (rebuilt from packs).
	LockMode   string
	LockPeriod time.Duration
	// SDKRetries is the number of attempts minio-go makes per request
	// (default 2; Arca's retry decorator retries whole operations).
	SDKRetries int
}

// Backend is a bucket (and prefix) in S3.
type Backend struct {
	cfg      Config
	mode     minio.RetentionMode // "" without object lock
	client   *minio.Client
	prefix   string
	location string
}

// Open connects to the service and checks that the bucket exists and that
// the credentials may use it.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("s3: no bucket given: %w", storage.ErrPermanent)
	}
	if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
		return nil, fmt.Errorf("s3: an access key ID and a secret access key are needed: %w", storage.ErrPermanent)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = "s3.amazonaws.com"
	}
	var mode minio.RetentionMode
	if cfg.LockMode != "" {
		mode = minio.RetentionMode(strings.ToUpper(cfg.LockMode))
		if !mode.IsValid() {
			return nil, fmt.Errorf("s3: object lock mode %q: give GOVERNANCE or COMPLIANCE: %w", cfg.LockMode, storage.ErrPermanent)
		}
		if cfg.LockPeriod <= 0 {
			return nil, fmt.Errorf("s3: object lock mode %s needs a positive lock period (how long each file is retained): %w", mode, storage.ErrPermanent)
		}
	}
	if cfg.SinglePutLimit == 0 {
		cfg.SinglePutLimit = 256 << 20
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	if cfg.Threads == 0 {
		cfg.Threads = 2
	}
	if cfg.SDKRetries == 0 {
		cfg.SDKRetries = 2
	}
	tr, err := minio.DefaultTransport(!cfg.DisableTLS)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if cfg.InsecureSkipVerify {
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // explicitly requested
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken),
		Secure:       !cfg.DisableTLS,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   cfg.SDKRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: endpoint %q: %v: %w", cfg.Endpoint, err, storage.ErrPermanent)
	}
	b := &Backend{cfg: cfg, client: client, mode: mode}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		b.prefix = p + "/"
	}
	b.location = "s3://" + cfg.Bucket
	if b.prefix != "" {
		b.location += "/" + strings.TrimSuffix(b.prefix, "/")
	}

	exists, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, b.mapErr("open", storage.Handle{}, err)
	}
	if !exists {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("s3: bucket %q does not exist at %s: create it, or let Arca create it: %w", cfg.Bucket, cfg.Endpoint, storage.ErrPermanent)
		}
		if err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region, ObjectLocking: mode != ""}); err != nil {
			var er minio.ErrorResponse
			if !(errors.As(err, &er) && (er.Code == "BucketAlreadyOwnedByYou" || er.Code == "BucketAlreadyExists")) {
				return nil, b.mapErr("create bucket", storage.Handle{}, err)
			}
		}
	}
	if mode != "" {
		enabled, _, _, _, err := client.GetObjectLockConfig(ctx, cfg.Bucket)
		var er minio.ErrorResponse
		if err != nil && !(errors.As(err, &er) && er.Code == "ObjectLockConfigurationNotFoundError") {
			return nil, b.mapErr("read object lock configuration", storage.Handle{}, err)
		}
		if enabled != "Enabled" {
			return nil, fmt.Errorf("s3: bucket %q at %s does not have Object Lock enabled, which object lock mode %s needs: "+
				"Object Lock can only be turned on when a bucket is created (mc mb --with-lock, aws s3api create-bucket --object-lock-enabled-for-bucket); "+
				"use a new bucket, or drop the object-lock option: %w", cfg.Bucket, cfg.Endpoint, mode, storage.ErrPermanent)
		}
	}
	return b, nil
}

var _ storage.Retainer = (*Backend)(nil)

// RetentionPeriod implements storage.Retainer: with object lock
// configured, LockPeriod for the files that hold data and cannot be
// rebuilt (config, keys, packs, recovery points); 0 for locks (removed on
// release) and index files (rebuilt from the packs' headers by `arca repo
// rebuild-index`, and replaced by every prune).
func (b *Backend) RetentionPeriod(t storage.FileType) time.Duration {
	if b.mode == "" || t == storage.LockFile || t == storage.IndexFile {
		return 0
	}
	return b.cfg.LockPeriod
}

// RetainUntil implements storage.Retainer: it reads the retention of h's
// current version and, if it ends before until, sets it to until.
func (b *Backend) RetainUntil(ctx context.Context, h storage.Handle, until time.Time) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if b.RetentionPeriod(h.Type) == 0 {
		return nil
	}
	key := b.key(h)
	oi, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return b.mapErr("retain", h, err)
	}
	_, cur, err := b.client.GetObjectRetention(ctx, b.cfg.Bucket, key, oi.VersionID)
	var er minio.ErrorResponse
	if err != nil && !(errors.As(err, &er) && (er.Code == "NoSuchObjectLockConfiguration" || er.Code == "ObjectLockConfigurationNotFoundError")) {
		return b.mapErr("retain", h, err)
	}
	if cur != nil && !cur.Before(until) {
		return nil
	}
	until = until.UTC()
	mode := b.mode
	if err := b.client.PutObjectRetention(ctx, b.cfg.Bucket, key, minio.PutObjectRetentionOptions{
		Mode: &mode, RetainUntilDate: &until, VersionID: oi.VersionID,
	}); err != nil {
		return b.mapErr("retain", h, err)
	}
	return nil
}

func (b *Backend) Location() string { return b.location }
func (b *Backend) Close() error     { return nil }

func (b *Backend) key(h storage.Handle) string { return b.prefix + h.Key() }

func (b *Backend) Save(ctx context.Context, h storage.Handle, size int64, rd io.Reader) error {
	if err := h.Valid(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	key := b.key(h)
	if _, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{}); err == nil {
		return fmt.Errorf("save %s: %w", h, storage.ErrExist)
	} else if merr := b.mapErr("save", h, err); !storage.IsNotExist(merr) {
		return merr
	}
	in := exact.New(ctx, rd, size)
	opts := minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    b.cfg.PartSize,
		NumThreads:  b.cfg.Threads,
	}
	if size >= 0 && size <= b.cfg.SinglePutLimit {
		opts.DisableMultipart = true
	}
	if p := b.RetentionPeriod(h.Type); p > 0 {
		opts.Mode = b.mode
		opts.RetainUntilDate = time.Now().Add(p).UTC()
	}
	opts.SetMatchETagExcept("*")
	_, err := b.client.PutObject(ctx, b.cfg.Bucket, key, in, size, opts)
	if err == nil {
		return nil
	}
	if rerr := in.Err(); rerr != nil {
		return fmt.Errorf("save %s: %w", h, rerr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("save %s: %w", h, ctx.Err())
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code == "PreconditionFailed" || er.StatusCode == http.StatusPreconditionFailed ||
		er.Code == "ConditionalRequestConflict") {
		return fmt.Errorf("save %s: %w", h, storage.ErrExist)
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
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		_ = opts.SetRange(offset, offset+int64(length)-1)
	case offset > 0:
		_ = opts.SetRange(offset, 0)
	}
	obj, err := b.client.GetObject(ctx, b.cfg.Bucket, b.key(h), opts)
	if err == nil {
		// GetObject is lazy; Stat sends the request.
		_, err = obj.Stat()
	}
	if err != nil {
		if obj != nil {
			obj.Close()
		}
		var er minio.ErrorResponse
		if errors.As(err, &er) && (er.Code == "InvalidRange" || er.StatusCode == http.StatusRequestedRangeNotSatisfiable) {
			// S3 refuses ranges that start at the end; there that is a
			// valid, empty read.
			fi, serr := b.Stat(ctx, h)
			if serr != nil {
				return serr
			}
			if offset == fi.Size {
				return fn(strings.NewReader(""))
			}
			return fmt.Errorf("load %s: offset %d beyond the end of the %d-byte file: %w", h, offset, fi.Size, storage.ErrPermanent)
		}
		return b.mapErr("load", h, err)
	}
	defer obj.Close()
	return fn(obj)
}

func (b *Backend) Stat(ctx context.Context, h storage.Handle) (storage.FileInfo, error) {
	if err := h.Valid(); err != nil {
		return storage.FileInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	oi, err := b.client.StatObject(ctx, b.cfg.Bucket, b.key(h), minio.StatObjectOptions{})
	if err != nil {
		return storage.FileInfo{}, b.mapErr("stat", h, err)
	}
	return storage.FileInfo{Name: h.Name, Size: oi.Size, ModTime: oi.LastModified}, nil
}

func (b *Backend) Remove(ctx context.Context, h storage.Handle) error {
	if b.mode != "" {
		return b.removeVersion(ctx, h)
	}
	if _, err := b.Stat(ctx, h); err != nil {
		return err
	}
	if err := b.client.RemoveObject(ctx, b.cfg.Bucket, b.key(h), minio.RemoveObjectOptions{}); err != nil {
		return b.mapErr("remove", h, err)
	}
	return nil
}

// removeVersion is Remove in a bucket with Object Lock: it deletes the
// current version itself (a delete without version ID would only hide it
// behind a delete marker), which the service refuses while the version is
// retained.
func (b *Backend) removeVersion(ctx context.Context, h storage.Handle) error {
	if err := h.Valid(); err != nil {
		return err
	}
	key := b.key(h)
	oi, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return b.mapErr("remove", h, err)
	}
	err = b.client.RemoveObject(ctx, b.cfg.Bucket, key, minio.RemoveObjectOptions{VersionID: oi.VersionID})
	if err == nil {
		return nil
	}
	// The service says AccessDenied both for a retained version and for
	// credentials without delete permission: the retention tells them apart.
	if _, until, rerr := b.client.GetObjectRetention(ctx, b.cfg.Bucket, key, oi.VersionID); rerr == nil && until != nil && until.After(time.Now()) {
		return &storage.RetainedError{Handle: h, Until: *until}
	}
	return b.mapErr("remove", h, err)
}

func (b *Backend) List(ctx context.Context, t storage.FileType, fn func(storage.FileInfo) error) error {
	if err := t.Valid(); err != nil {
		return fmt.Errorf("list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
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
	// Stopping early must stop minio-go's listing goroutine.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := b.prefix + string(t) + "/"
	for oi := range b.client.ListObjects(lctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("list %s: %w", t, ctx.Err())
			}
			return b.mapErr("list", storage.Handle{Type: t}, oi.Err)
		}
		rel := strings.TrimPrefix(oi.Key, prefix)
		name := rel
		if t == storage.PackFile {
			shard, rest, ok := strings.Cut(rel, "/")
			if !ok || len(shard) != 2 || !strings.HasPrefix(rest, shard) {
				continue
			}
			name = rest
		}
		if name == "" || strings.Contains(name, "/") {
			continue // not ours
		}
		if err := fn(storage.FileInfo{Name: name, Size: oi.Size, ModTime: oi.LastModified}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	return nil
}

// mapErr classifies a minio-go error. Errors not recognised as permanent
// stay transient (network errors, 5xx, throttling).
func (b *Backend) mapErr(op string, h storage.Handle, err error) error {
	what := op
	if h.Type != "" {
		what += " " + h.String()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		var nerr net.Error
		if errors.As(err, &nerr) {
			return fmt.Errorf("%s on %s (endpoint %s): %w", what, b.location, b.cfg.Endpoint, err)
		}
		return fmt.Errorf("%s on %s: %w", what, b.location, err)
	}
	switch {
	case er.Code == "NoSuchKey" || er.Code == "NotFound" && h.Type != "":
		return fmt.Errorf("%s: %w", what, storage.ErrNotExist)
	case er.Code == "NoSuchBucket":
		return fmt.Errorf("%s: bucket %q does not exist at %s: create it, or let Arca create it: %w", what, b.cfg.Bucket, b.cfg.Endpoint, storage.ErrPermanent)
	case er.Code == "AccessDenied" || er.Code == "InvalidAccessKeyId" || er.Code == "SignatureDoesNotMatch" ||
		er.StatusCode == http.StatusUnauthorized || er.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s on %s: access denied (%s): check the access key, secret key and region: %w", what, b.location, er.Code, storage.ErrPermanent)
	case er.StatusCode == http.StatusNotFound && h.Type != "":
		return fmt.Errorf("%s: %w", what, storage.ErrNotExist)
	case er.Code == "SlowDown" || er.Code == "RequestTimeout" || er.Code == "InternalError" ||
		er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests || er.StatusCode >= 500:
		return fmt.Errorf("%s on %s: %s (HTTP %d, transient): %s", what, b.location, er.Code, er.StatusCode, er.Message)
	case er.StatusCode >= 400:
		return fmt.Errorf("%s on %s: %s (HTTP %d): %s: %w", what, b.location, er.Code, er.StatusCode, er.Message, storage.ErrPermanent)
	}
	return fmt.Errorf("%s on %s: %w", what, b.location, err)
}
