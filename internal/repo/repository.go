package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/restic/chunker"

	"github.com/arca-backup/arca/internal/storage"
)

// FormatVersion is the repository format version this package writes for
// new repositories (docs/repository-format.md §12). It reads every version
// from MinFormatVersion to FormatVersion, and writes into an existing
// repository in that repository's version (no migration).
const (
	FormatVersion    = 3
	MinFormatVersion = 1
)

var (
	// ErrWrongPassword: no key file opens with the password.
	ErrWrongPassword = errors.New("wrong password or no key for this repository")
	// ErrNoRepository: the location holds no repository config file.
	ErrNoRepository = errors.New("no repository at this location")
	// ErrConfigDamaged: the password opened a key, but no such key opens
	// the config file.
	ErrConfigDamaged = errors.New("the password is right but the repository config does not decrypt: the config file is damaged or the key belongs to another repository")
	// ErrRepositoryExists: Init found a config file.
	ErrRepositoryExists = errors.New("a repository already exists at this location")
)

// KeyRefusedError: no key opened with the password, and some key files were
// not even tried because their scrypt parameters exceed the limits. It
// matches ErrWrongPassword and ErrKDFTooCostly.
type KeyRefusedError struct{ Refused []error }

func (e *KeyRefusedError) Error() string {
	msg := ErrWrongPassword.Error() + "; refused without deriving (a planted key file, or one written with a cost this version does not accept): "
	for i, err := range e.Refused {
		if i > 0 {
			msg += "; "
		}
		msg += err.Error()
	}
	return msg + "; remove such a key file with `arca repo key remove ID` (opened with another password), or from the storage's keys/ directory"
}

func (e *KeyRefusedError) Unwrap() []error {
	return append([]error{ErrWrongPassword}, e.Refused...)
}

// Clock supplies the time; tests inject a fake one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

func (f ClockFunc) Now() time.Time { return f() }

// Option configures Init and Open.
type Option func(*options)

type options struct {
	clock        Clock
	kdf          KDFParams
	packSize     int
	uploaders    int
	cacheBytes   int
	staleAfter   time.Duration
	refreshEvery time.Duration
	lockWait     time.Duration
	lockReport   func(LockWait)
}

func defaultOptions() options {
	return options{
		clock:    realClock{},
		kdf:      DefaultKDF,
		packSize: 8 << 20,
		// 4, not 2: a local pack's fsync, rename and directory fsync are
		// waits, and with 2 uploaders the sealing goroutines sat blocked
		// handing full packs over while both waited (the mover's block
		// profile, docs/benchmarks.md); each costs one 10 MiB pack buffer.
		uploaders:    4,
		cacheBytes:   32 << 20,
		staleAfter:   30 * time.Minute,
		refreshEvery: 5 * time.Minute,
		lockWait:     DefaultLockWait,
	}
}

// WithClock sets the clock used for lock times, key creation and retention.
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// WithKDF sets the scrypt parameters for keys created by Init and AddKey.
func WithKDF(p KDFParams) Option { return func(o *options) { o.kdf = p } }

// WithPackSize sets the target pack size in bytes (default 8 MiB).
func WithPackSize(n int) Option { return func(o *options) { o.packSize = n } }

// WithUploaders sets how many packs upload concurrently per Writer (default 4).
func WithUploaders(n int) Option { return func(o *options) { o.uploaders = max(1, n) } }

// WithCacheSize sets the read cache size in bytes (0 disables it).
func WithCacheSize(n int) Option { return func(o *options) { o.cacheBytes = n } }

// WithLockTimes sets when a lock without refresh is stale and how often held
// locks are refreshed.
func WithLockTimes(staleAfter, refreshEvery time.Duration) Option {
	return func(o *options) { o.staleAfter, o.refreshEvery = staleAfter, refreshEvery }
}

// DefaultLockWait bounds how long a writer or restore waits for a prune's
// exclusive lock.
const DefaultLockWait = 15 * time.Minute

// WithLockWait sets how long a shared lock request (a writer, a restore)
// waits, retrying with backoff, while another process holds the exclusive
// lock (0: fail at once), and a function told of each wait (nil: silent).
func WithLockWait(max time.Duration, report func(LockWait)) Option {
	return func(o *options) { o.lockWait, o.lockReport = max, report }
}

// Config is the decrypted repository config file.
type Config struct {
	Version int `json:"version"`
	ID      ID  `json:"id"`
	// ChunkerPolynomial: the Rabin chunker's polynomial (format v1 and v2).
	ChunkerPolynomial chunker.Pol `json:"chunkerPolynomial,omitempty"`
	// GearSeed: what the gear chunker's table is derived from (format v3).
	GearSeed *ID `json:"gearSeed,omitempty"`
}

// openConfig opens the config envelope with master key mk: as a bound (v2)
// envelope first, then as an unbound (v1) one. It returns the crypter the
// repository's other files use: bound for v2, unbound for v1. errDecrypt
// means mk is not this repository's key.
func openConfig(mk, sealed []byte) (*crypter, *Config, error) {
	for _, bound := range []bool{true, false} {
		c, err := newCrypter(mk, bound)
		if err != nil {
			return nil, nil, err
		}
		cb, err := c.open(nil, sealed, 0, kindConfig)
		if errors.Is(err, errDecrypt) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		cfg, err := decodeConfig(cb)
		if err != nil {
			return nil, nil, err
		}
		// The version must match the envelope: a v1 (unbound) config that
		// claimed v2 would make this build trust unbound files as bound.
		if bound != (cfg.Version >= 2) {
			return nil, nil, fmt.Errorf("config: version %d in a format-v%d envelope: the config is damaged", cfg.Version, map[bool]int{true: 2, false: 1}[bound])
		}
		return c, cfg, nil
	}
	return nil, nil, errDecrypt
}

func decodeConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if c.Version < MinFormatVersion || c.Version > FormatVersion {
		return nil, fmt.Errorf("config: unsupported repository version %d (this build reads %d to %d)", c.Version, MinFormatVersion, FormatVersion)
	}
	if c.Version >= 3 {
		// One chunker per repository: a v3 config names the gear seed and
		// no polynomial.
		if c.GearSeed == nil || c.ChunkerPolynomial != 0 {
			return nil, fmt.Errorf("config: a format-v%d config needs gearSeed and no chunkerPolynomial: the config is damaged", c.Version)
		}
		return &c, nil
	}
	if c.GearSeed != nil {
		return nil, fmt.Errorf("config: gearSeed in a format-v%d config: the config is damaged", c.Version)
	}
	if !c.ChunkerPolynomial.Irreducible() || c.ChunkerPolynomial.Deg() != 53 {
		return nil, errors.New("config: chunker polynomial is not an irreducible polynomial of degree 53")
	}
	return &c, nil
}

// Repository is an open repository. It is safe for concurrent use.
type Repository struct {
	be     storage.Backend
	opts   options
	crypt  *crypter
	master []byte
	keyID  ID
	cfg    Config
	gear   *gearTable // format v3's chunker; nil for v1 and v2 (Rabin)

	idx   atomic.Pointer[memIndex] // replaced when prune removes index files
	cache atomic.Pointer[blockCache]

	mu         sync.Mutex
	indexFiles map[ID]bool  // index files loaded into idx
	indexErrs  map[ID]error // index files that failed to load
}

var configHandle = storage.Handle{Type: storage.ConfigFile}

// Init creates a repository at be, protected by password.
func Init(ctx context.Context, be storage.Backend, password string, opts ...Option) (*Repository, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	if password == "" {
		return nil, errors.New("empty password")
	}
	if _, err := be.Stat(ctx, configHandle); err == nil {
		return nil, ErrRepositoryExists
	} else if !storage.IsNotExist(err) {
		return nil, fmt.Errorf("stat config: %w", err)
	}
	r := &Repository{be: be, opts: o, master: randomBytes(keySize)}
	seed := ID(randomBytes(32))
	r.cfg = Config{Version: FormatVersion, ID: ID(randomBytes(32)), GearSeed: &seed}
	var err error
	if r.crypt, err = newCrypter(r.master, true); err != nil {
		return nil, err
	}
	// Key first, config last: the config file is what makes the repository
	// exist, so a crash in between leaves no repository (and a stray key).
	kb, err := newKeyFile(r.master, password, o.kdf, o.clock.Now())
	if err != nil {
		return nil, err
	}
	r.keyID = Hash(kb)
	if err := be.Save(ctx, storage.Handle{Type: storage.KeyFile, Name: r.keyID.String()}, int64(len(kb)), bytes.NewReader(kb)); err != nil {
		return nil, fmt.Errorf("save key: %w", err)
	}
	cb, err := json.Marshal(r.cfg)
	if err != nil {
		return nil, err
	}
	sealed := r.crypt.seal(nil, cb, flagRaw, kindConfig)
	if err := be.Save(ctx, configHandle, int64(len(sealed)), bytes.NewReader(sealed)); err != nil {
		return nil, fmt.Errorf("save config: %w", err)
	}
	r.init()
	return r, nil
}

func (r *Repository) init() {
	r.crypt.s2 = r.cfg.Version >= 3
	if r.cfg.GearSeed != nil {
		r.gear = newGearTable(r.cfg.GearSeed[:])
	}
	r.idx.Store(newMemIndex())
	r.cache.Store(newBlockCache(r.opts.cacheBytes))
	r.indexFiles = map[ID]bool{}
	r.indexErrs = map[ID]error{}
}

// Open opens the repository at be. It writes nothing.
func Open(ctx context.Context, be storage.Backend, password string, opts ...Option) (*Repository, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	cfgSealed, err := storage.ReadAll(ctx, be, configHandle)
	if storage.IsNotExist(err) {
		return nil, fmt.Errorf("%s: %w", be.Location(), ErrNoRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	r := &Repository{be: be, opts: o}
	var keyNames []string
	if err := be.List(ctx, storage.KeyFile, func(fi storage.FileInfo) error {
		keyNames = append(keyNames, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	unwrapped := 0      // keys the password opened
	var refused []error // key files refused for their scrypt cost
	for _, name := range keyNames {
		id, err := ParseID(name)
		if err != nil {
			continue
		}
		kb, err := storage.ReadAll(ctx, be, storage.Handle{Type: storage.KeyFile, Name: name})
		if err != nil {
			if storage.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("read key %s: %w", name, err)
		}
		kf, err := decodeKeyFile(kb)
		if err != nil {
			if errors.Is(err, ErrKDFTooCostly) {
				refused = append(refused, fmt.Errorf("key file %s: %w", id.Short(), err))
			}
			continue
		}
		mk, err := kf.unwrap(password)
		if err != nil {
			continue
		}
		unwrapped++
		// A key from an interrupted Init may wrap another master key: the
		// right one is the one that opens the config. A v2 config is bound
		// to its kind, a v1 config is not; each must say its version.
		c, cfg, err := openConfig(mk, cfgSealed)
		if errors.Is(err, errDecrypt) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r.crypt, r.master, r.keyID, r.cfg = c, mk, id, *cfg
		break
	}
	if r.crypt == nil {
		if unwrapped > 0 {
			return nil, ErrConfigDamaged
		}
		if len(refused) > 0 {
			// Say why: a planted key file, or one from a build with other
			// limits, is skipped rather than derived.
			return nil, &KeyRefusedError{Refused: refused}
		}
		return nil, ErrWrongPassword
	}
	r.init()
	if err := r.loadIndex(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// OpenOrInit opens the repository at be, creating it if there is none.
func OpenOrInit(ctx context.Context, be storage.Backend, password string, opts ...Option) (*Repository, bool, error) {
	r, err := Open(ctx, be, password, opts...)
	if errors.Is(err, ErrNoRepository) {
		r, err = Init(ctx, be, password, opts...)
		if errors.Is(err, ErrRepositoryExists) { // lost a race with another Init
			r, err = Open(ctx, be, password, opts...)
			return r, false, err
		}
		return r, err == nil, err
	}
	return r, false, err
}

// Close releases resources. It does not close the backend.
func (r *Repository) Close() error { return nil }

// Config returns the repository config.
func (r *Repository) Config() Config { return r.cfg }

// Backend returns the storage the repository lives in.
func (r *Repository) Backend() storage.Backend { return r.be }

// saveSealed encrypts body, names the file by the hash of the stored bytes
// and saves it.
func (r *Repository) saveSealed(ctx context.Context, t storage.FileType, body []byte, compress bool) (ID, int, error) {
	comp := flagRaw
	if compress {
		comp = flagZstd
	}
	sealed := r.crypt.seal(nil, body, comp, unitKind(t))
	id := Hash(sealed)
	err := r.be.Save(ctx, storage.Handle{Type: t, Name: id.String()}, int64(len(sealed)), bytes.NewReader(sealed))
	if err != nil {
		return id, 0, fmt.Errorf("save %s/%s: %w", t, id, err)
	}
	return id, len(sealed), nil
}

// loadSealed loads a file, verifies that its name is the hash of its bytes
// and decrypts it.
func (r *Repository) loadSealed(ctx context.Context, t storage.FileType, id ID) ([]byte, error) {
	h := storage.Handle{Type: t, Name: id.String()}
	b, err := storage.ReadAll(ctx, r.be, h)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", h, err)
	}
	if Hash(b) != id {
		return nil, &damageError{fmt.Errorf("%s: content does not match its name (%d bytes)", h, len(b))}
	}
	body, err := r.crypt.open(nil, b, 0, unitKind(t))
	if err != nil {
		return nil, &damageError{fmt.Errorf("%s: %w", h, err)}
	}
	return body, nil
}
