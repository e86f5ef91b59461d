package image

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Who the extension runs as: the conventional "nonroot" user of distroless
// images, with no login shell and no privileges.
const (
	NonRootUID  = 65532
	NonRootName = "nonroot"
	NonRootHome = "/home/nonroot"
)

// Paths inside the extension image.
const (
	ArcaPath     = "/arca"
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
)

// HostCABundle is where Debian's ca-certificates keeps the bundle the image
// copies.
const HostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// Source is where Arca's source lives: the org.opencontainers.image.source
// label.
const Source = "https://github.com/arca-backup/arca"

// OCI annotation keys used as image labels.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelCreated  = "org.opencontainers.image.created"
)

// ExtensionOptions are the inputs of the extension image.
type ExtensionOptions struct {
	// Arca is a static linux/amd64 arca binary (see BuildArca).
	Arca []byte
	// CABundle is the PEM bundle of trusted roots, for S3 and Azure over
	// TLS (Debian's /etc/ssl/certs/ca-certificates.crt).
	CABundle []byte
	Version  string
	// Revision is the commit the binary was built from.
	Revision string
	// Created is the image's time: the commit time or SOURCE_DATE_EPOCH.
	Created time.Time
}

// Extension builds the image `arca extension install` deploys: the static
// arca binary as /arca (the entrypoint), a CA bundle, and /etc/passwd and
// /etc/group naming the non-root user 65532 it runs as. There is no shell
// and no package manager.
func Extension(o ExtensionOptions) (v1.Image, error) {
	if o.Version == "" {
		return nil, errors.New("extension image: no version given")
	}
	if len(o.CABundle) == 0 {
		return nil, errors.New("extension image: empty CA bundle (install Debian's ca-certificates: make deps)")
	}
	if err := CheckStaticBinary(o.Arca); err != nil {
		return nil, fmt.Errorf("extension image: arca binary: %w", err)
	}
	uid := fmt.Sprint(NonRootUID)
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		NonRootName + ":x:" + uid + ":" + uid + ":" + NonRootName + ":" + NonRootHome + ":/sbin/nologin\n"
	group := "root:x:0:\n" + NonRootName + ":x:" + uid + ":\n"
	labels := map[string]string{
		LabelTitle:   "arca",
		LabelVersion: o.Version,
		LabelSource:  Source,
		LabelCreated: o.Created.UTC().Format(time.RFC3339),
	}
	if o.Revision != "" {
		labels[LabelRevision] = o.Revision
	}
	return Build(Spec{
		Layers: []Layer{
			{Comment: "base: users, CA bundle, /tmp", Entries: []Entry{
				File("/etc/passwd", 0o644, []byte(passwd)),
				File("/etc/group", 0o644, []byte(group)),
				File("/etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n")),
				File(CABundlePath, 0o644, o.CABundle),
				Dir("/root", 0o700),
				Dir("/tmp", 0o777|fs.ModeSticky),
				{Path: NonRootHome, Mode: fs.ModeDir | 0o700, UID: NonRootUID, GID: NonRootUID},
			}},
			{Comment: "arca " + o.Version, Entries: []Entry{
				File(ArcaPath, 0o755, o.Arca),
			}},
		},
		Entrypoint: []string{ArcaPath},
		Env: []string{
			"PATH=/",
			"HOME=" + NonRootHome,
			"SSL_CERT_FILE=" + CABundlePath,
		},
		User:       uid + ":" + uid,
		WorkingDir: NonRootHome,
		Labels:     labels,
		Created:    o.Created,
	})
}

// CheckStaticBinary reports why b cannot run alone in a scratch image: not
// an ELF executable for linux/amd64, or dynamically linked.
func CheckStaticBinary(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("built for %s, the image is %s/%s (build with GOOS=%s GOARCH=%s)", f.Machine, OS, Architecture, OS, Architecture)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked: the image has no C library (build with CGO_ENABLED=0)")
		}
	}
	return nil
}
