// Package location turns a repository URL into a storage.Backend:
//
//	file:///abs/path                  (or a bare path: /abs/path, ./rel)
//	azure://account/container[/prefix][?endpoint=URL]
//	s3://bucket[/prefix][?endpoint=host:port&tls=false&region=r&insecure-skip-verify=true&path-style=true]
//
// Credentials never go in the URL: they come from Credentials (command-line
// flags) or, for fields left empty, from the environment:
// AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_CONNECTION_STRING;
// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, and AWS_REGION
// (or AWS_DEFAULT_REGION) when the URL names no region.
//
// Backends are wrapped in the retry decorator unless Options.NoRetry is set.
package location

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/azure"
	"github.com/arca-backup/arca/internal/storage/local"
	"github.com/arca-backup/arca/internal/storage/retry"
	"github.com/arca-backup/arca/internal/storage/s3"
)

// Credentials come from command-line flags; empty fields fall back to the
// environment variables named in the package doc.
type Credentials struct {
	AzureAccountKey       string
	AzureSASToken         string
	AzureConnectionString string

	AWSAccessKeyID     string
	AWSSecretAccessKey string
	AWSSessionToken    string
}

// Options tunes Open.
type Options struct {
	// Create makes a missing repository directory, container or bucket
	// (for `repo init`); otherwise a missing one is an error.
	Create bool
	// NoRetry returns the bare backend, without the retry decorator.
	NoRetry bool
	// Retry configures the retry decorator.
	Retry retry.Options
}

// Kind is the kind of storage a URL names.
type Kind string

const (
	File  Kind = "file"
	Azure Kind = "azure"
	S3    Kind = "s3"
)

// Location is a parsed repository URL.
type Location struct {
	Kind Kind
	Path string // File: absolute, cleaned

	Account   string // Azure
	Container string // Azure
	Bucket    string // S3
	Prefix    string // Azure, S3: "" or "a/b"

	// Azure: the blob service URL (empty: the public endpoint of Account).
	// S3: host[:port] (empty: s3.amazonaws.com).
	Endpoint           string
	DisableTLS         bool   // S3
	InsecureSkipVerify bool   // S3
	PathStyle          bool   // S3
	Region             string // S3

	// S3 Object Lock: files are written with retention of LockMode
	// ("GOVERNANCE" or "COMPLIANCE") for LockPeriod (docs/storage.md).
	LockMode   string
	LockPeriod time.Duration
}

// String is the canonical URL, free of credentials.
func (l Location) String() string {
	switch l.Kind {
	case File:
		// Only what would end or change the path is escaped, so ordinary
		// paths read as they are and every path parses back to itself.
		return "file://" + fileEscaper.Replace(filepath.ToSlash(l.Path))
	case Azure:
		s := "azure://" + l.Account + "/" + l.Container
		if l.Prefix != "" {
			s += "/" + l.Prefix
		}
		if l.Endpoint != "" {
			s += "?endpoint=" + queryEscape(l.Endpoint)
		}
		return s
	case S3:
		s := "s3://" + l.Bucket
		if l.Prefix != "" {
			s += "/" + l.Prefix
		}
		q := url.Values{}
		if l.Endpoint != "" {
			q.Set("endpoint", l.Endpoint)
		}
		if l.DisableTLS {
			q.Set("tls", "false")
		}
		if l.Region != "" {
			q.Set("region", l.Region)
		}
		if l.InsecureSkipVerify {
			q.Set("insecure-skip-verify", "true")
		}
		if l.PathStyle {
			q.Set("path-style", "true")
		}
		if l.LockMode != "" {
			q.Set("object-lock", strings.ToLower(l.LockMode))
			q.Set("lock-period", FormatLockPeriod(l.LockPeriod))
		}
		if len(q) > 0 {
			s += "?" + strings.NewReplacer("%3A", ":", "%2F", "/").Replace(q.Encode())
		}
		return s
	}
	return "?"
}

var fileEscaper = strings.NewReplacer("%", "%25", "#", "%23", "?", "%3F")

// queryEscape escapes a query value but keeps ":" and "/" readable (both
// are allowed in a query).
func queryEscape(v string) string {
	return strings.NewReplacer("%3A", ":", "%2F", "/").Replace(url.QueryEscape(v))
}

// ParseError says what is wrong with a repository URL and how to fix it.
type ParseError struct {
	URL     string
	Problem string
	Fix     string
}

func (e *ParseError) Error() string {
	msg := fmt.Sprintf("invalid repository URL %q: %s", e.URL, e.Problem)
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

// Is makes ParseError a permanent storage error.
func (e *ParseError) Is(target error) bool { return target == storage.ErrPermanent }

var (
	schemeRE    = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*)://`)
	accountRE   = regexp.MustCompile(`^[a-z0-9]{3,24}$`)
	containerRE = regexp.MustCompile(`^[a-z0-9]+(?:-[a-z0-9]+)*$`)
	bucketRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// Parse parses a repository URL without touching storage.
func Parse(raw string) (Location, error) {
	bad := func(problem, fix string) (Location, error) {
		return Location{}, &ParseError{URL: raw, Problem: problem, Fix: fix}
	}
	if strings.TrimSpace(raw) == "" {
		return bad("it is empty", "give file:///path, azure://account/container/prefix or s3://bucket/prefix")
	}
	if i := strings.IndexFunc(raw, unicode.IsControl); i >= 0 {
		return bad(fmt.Sprintf("it contains the control character %q at byte %d", raw[i], i), "remove it; percent-encode it in a URL if it is really part of the path")
	}
	m := schemeRE.FindStringSubmatch(raw)
	if m == nil {
		if strings.Contains(raw, ":") && !strings.ContainsAny(raw[:strings.Index(raw, ":")], "/.") {
			return bad("it looks like a URL without \"//\"", "write scheme://…, for example s3://bucket/prefix")
		}
		abs, err := filepath.Abs(raw)
		if err != nil {
			return bad(err.Error(), "")
		}
		return Location{Kind: File, Path: abs}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad(err.Error(), "percent-encode special characters")
	}
	if u.User != nil {
		return bad("it contains credentials", "remove them from the URL and pass them by flag or environment variable")
	}
	switch strings.ToLower(m[1]) {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return bad(fmt.Sprintf("file URLs have no host (got %q)", u.Host), "use three slashes for an absolute path: file:///"+u.Host+u.Path)
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return bad("the path is missing or not absolute", "write file:///absolute/path, or pass a bare relative path")
		}
		if len(u.Query()) > 0 {
			return bad("file URLs take no query parameters", "")
		}
		return Location{Kind: File, Path: filepath.Clean(filepath.FromSlash(u.Path))}, nil

	case "azure":
		l := Location{Kind: Azure, Account: u.Host}
		if l.Account == "" {
			return bad("the storage account is missing", "write azure://account/container[/prefix]")
		}
		if !accountRE.MatchString(l.Account) {
			return bad(fmt.Sprintf("%q is not a storage account name (3–24 lowercase letters and digits)", l.Account), "write azure://account/container[/prefix]")
		}
		container, prefix, err := splitPath(u.Path)
		if err != nil {
			return bad(err.Error(), "write azure://account/container[/prefix]")
		}
		if container == "" {
			return bad("the container is missing", "write azure://"+l.Account+"/container[/prefix]")
		}
		if len(container) < 3 || len(container) > 63 || !containerRE.MatchString(container) {
			return bad(fmt.Sprintf("%q is not a container name (3–63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit)", container), "")
		}
		l.Container, l.Prefix = container, prefix
		q := u.Query()
		if err := onlyKnown(q, "endpoint"); err != nil {
			return bad(err.Error(), "")
		}
		if ep := q.Get("endpoint"); ep != "" {
			eu, err := url.Parse(ep)
			if err != nil || (eu.Scheme != "http" && eu.Scheme != "https") || eu.Host == "" {
				return bad(fmt.Sprintf("endpoint %q is not an http(s) URL", ep), "give the blob service URL, for Azurite endpoint=http://127.0.0.1:10000/"+l.Account)
			}
			l.Endpoint = strings.TrimSuffix(ep, "/")
		}
		return l, nil

	case "s3":
		l := Location{Kind: S3, Bucket: u.Hostname()}
		if l.Bucket == "" {
			return bad("the bucket is missing", "write s3://bucket[/prefix]?endpoint=host:port")
		}
		if u.Port() != "" {
			return bad("the port belongs to the endpoint, not the bucket", "write s3://"+l.Bucket+"/prefix?endpoint=host:"+u.Port())
		}
		if !bucketRE.MatchString(l.Bucket) || strings.Contains(l.Bucket, "..") {
			return bad(fmt.Sprintf("%q is not a bucket name (3–63 lowercase letters, digits, dots and hyphens)", l.Bucket), "")
		}
		_, prefix, err := splitPath("/x" + u.Path)
		if err != nil {
			return bad(err.Error(), "")
		}
		l.Prefix = prefix
		q := u.Query()
		if err := onlyKnown(q, "endpoint", "tls", "region", "insecure-skip-verify", "path-style", "object-lock", "lock-period"); err != nil {
			return bad(err.Error(), "")
		}
		if ep := q.Get("endpoint"); ep != "" {
			if strings.Contains(ep, "://") {
				eu, err := url.Parse(ep)
				if err != nil || eu.Host == "" {
					return bad(fmt.Sprintf("endpoint %q is not host[:port]", ep), "write endpoint=host:port and tls=false for plain HTTP")
				}
				// Accept http://host:port as a convenience.
				if eu.Scheme == "http" {
					l.DisableTLS = true
				}
				ep = eu.Host
			}
			l.Endpoint = ep
		}
		for _, b := range []struct {
			name   string
			target *bool
			invert bool
		}{{"tls", &l.DisableTLS, true}, {"insecure-skip-verify", &l.InsecureSkipVerify, false}, {"path-style", &l.PathStyle, false}} {
			v := q.Get(b.name)
			if v == "" {
				continue
			}
			on, err := strconv.ParseBool(v)
			if err != nil {
				return bad(fmt.Sprintf("%s=%q is not a boolean", b.name, v), "use true or false")
			}
			if b.invert {
				on = !on
			}
			*b.target = on
		}
		l.Region = q.Get("region")
		mode, period := q.Get("object-lock"), q.Get("lock-period")
		switch strings.ToLower(mode) {
		case "":
			if period != "" {
				return bad("lock-period is set without object-lock", "add object-lock=compliance or object-lock=governance, or drop lock-period")
			}
		case "governance", "compliance":
			l.LockMode = strings.ToUpper(mode)
			if period == "" {
				return bad("object-lock needs lock-period (how long each file is retained)", "add lock-period=DAYSd, at least the longest retention of the recovery points stored here, e.g. lock-period=35d")
			}
			d, err := ParseLockPeriod(period)
			if err != nil {
				return bad(fmt.Sprintf("lock-period=%q: %v", period, err), "write a number of days such as 35d, or a duration such as 36h")
			}
			l.LockPeriod = d
		default:
			return bad(fmt.Sprintf("object-lock=%q is not a lock mode", mode), "use object-lock=compliance (nobody can delete before the date) or object-lock=governance (users allowed to bypass governance can)")
		}
		return l, nil
	}
	return bad(fmt.Sprintf("unsupported scheme %q", m[1]), "use file://, azure:// or s3://")
}

// ParseLockPeriod reads an object lock period: a whole number of days
// ("35d") or a Go duration ("36h", "90s"); it must be positive.
func ParseLockPeriod(v string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil {
			return 0, errors.New("not a whole number of days")
		}
		if days > 36500 {
			return 0, errors.New("more than 100 years")
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, errors.New("neither days (35d) nor a duration (36h)")
		}
	}
	if d <= 0 {
		return 0, errors.New("it must be positive")
	}
	return d, nil
}

// FormatLockPeriod writes d as ParseLockPeriod reads it: days when whole.
func FormatLockPeriod(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}

// splitPath splits "/first/rest/of/path" into "first" and "rest/of/path".
func splitPath(p string) (first, rest string, err error) {
	p = strings.TrimPrefix(p, "/")
	first, rest, _ = strings.Cut(p, "/")
	rest = strings.Trim(rest, "/")
	for _, seg := range strings.Split(rest, "/") {
		if seg == "." || seg == ".." {
			return "", "", errors.New(`the prefix must not contain "." or ".." segments`)
		}
		if rest != "" && seg == "" {
			return "", "", errors.New("the prefix contains an empty segment (\"//\")")
		}
	}
	return first, rest, nil
}

func onlyKnown(q url.Values, known ...string) error {
	var unknown []string
	for k := range q {
		ok := false
		for _, kn := range known {
			if k == kn {
				ok = true
			}
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("unknown query parameter(s) %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

// Open parses raw and opens the backend it names, wrapped in the retry
// decorator.
func Open(ctx context.Context, raw string, creds Credentials) (storage.Backend, error) {
	return OpenWith(ctx, raw, creds, Options{})
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, raw string, creds Credentials, opts Options) (storage.Backend, error) {
	l, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	be, err := open(ctx, l, creds, opts)
	if err != nil {
		return nil, err
	}
	if opts.NoRetry {
		return be, nil
	}
	return retry.New(be, opts.Retry), nil
}

func open(ctx context.Context, l Location, creds Credentials, opts Options) (storage.Backend, error) {
	switch l.Kind {
	case File:
		if opts.Create {
			be, err := local.Create(l.Path)
			if err != nil {
				return nil, fmt.Errorf("create repository directory %s: %w", l.Path, err)
			}
			return be, nil
		}
		be, err := local.Open(l.Path)
		if storage.IsNotExist(err) {
			return nil, fmt.Errorf("no repository directory at %s (check the path; a new repository is created by `arca repo init`): %w", l.Path, err)
		}
		return be, err

	case Azure:
		key := first(creds.AzureAccountKey, os.Getenv("AZURE_STORAGE_KEY"))
		sas := first(creds.AzureSASToken, os.Getenv("AZURE_STORAGE_SAS_TOKEN"))
		cs := first(creds.AzureConnectionString, os.Getenv("AZURE_STORAGE_CONNECTION_STRING"))
		if creds.AzureAccountKey != "" || creds.AzureSASToken != "" || creds.AzureConnectionString != "" {
			// Flags given: the environment does not add to them.
			key, sas, cs = creds.AzureAccountKey, creds.AzureSASToken, creds.AzureConnectionString
		}
		n := count(key, sas, cs)
		if n == 0 {
			return nil, fmt.Errorf("%s: no Azure credentials: set one of AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_CONNECTION_STRING (or the matching flag): %w", l, storage.ErrPermanent)
		}
		if n > 1 {
			return nil, fmt.Errorf("%s: more than one kind of Azure credential is set (account key, SAS token, connection string): keep one: %w", l, storage.ErrPermanent)
		}
		be, err := azure.Open(ctx, azure.Config{
			Account: l.Account, Container: l.Container, Prefix: l.Prefix, Endpoint: l.Endpoint,
			AccountKey: key, SASToken: sas, ConnectionString: cs, CreateContainer: opts.Create,
		})
		if err != nil {
			return nil, unreachable(l, err)
		}
		return be, nil

	case S3:
		id := first(creds.AWSAccessKeyID, os.Getenv("AWS_ACCESS_KEY_ID"))
		secret := first(creds.AWSSecretAccessKey, os.Getenv("AWS_SECRET_ACCESS_KEY"))
		token := first(creds.AWSSessionToken, os.Getenv("AWS_SESSION_TOKEN"))
		if id == "" || secret == "" {
			return nil, fmt.Errorf("%s: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the matching flags): %w", l, storage.ErrPermanent)
		}
		region := first(l.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
		be, err := s3.Open(ctx, s3.Config{
			Endpoint: l.Endpoint, Bucket: l.Bucket, Prefix: l.Prefix, Region: region,
			AccessKeyID: id, SecretAccessKey: secret, SessionToken: token,
			DisableTLS: l.DisableTLS, InsecureSkipVerify: l.InsecureSkipVerify, PathStyle: l.PathStyle,
			CreateBucket: opts.Create, LockMode: l.LockMode, LockPeriod: l.LockPeriod,
		})
		if err != nil {
			return nil, unreachable(l, err)
		}
		return be, nil
	}
	return nil, fmt.Errorf("unsupported location kind %q", l.Kind)
}

// unreachable words a transient error of Open (the service did not answer)
// for a person.
func unreachable(l Location, err error) error {
	if storage.IsPermanent(err) {
		return err
	}
	ep := l.Endpoint
	if ep == "" {
		ep = "the default endpoint"
	}
	return &UnreachableError{Location: l.String(), Endpoint: ep, Err: err}
}

// UnreachableError: the storage service did not answer when the backend
// was opened (a transient error: the repository is unavailable, not
// wrong).
type UnreachableError struct {
	Location, Endpoint string
	Err                error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach storage %s at %s (check the endpoint, the network and that the service runs): %v", e.Location, e.Endpoint, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

func first(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func count(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}
