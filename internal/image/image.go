// Package image builds Arca's container images without a Docker daemon:
// the extension image that `arca extension install` deploys (`make image`),
// and the pause and busybox images the test environment runs on its node.
//
// Images are assembled from files in memory with go-containerregistry and
// are reproducible: entries are sorted, every file has a fixed owner and the
// image's creation time as its modification time, the config carries that
// same time, and layers are compressed by a deterministic gzip. The same
// inputs therefore give the same image digest on every machine.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one file, directory or symbolic link in a layer.
type Entry struct {
	// Path is absolute inside the image ("/etc/passwd").
	Path string
	// Mode holds the permission bits, plus fs.ModeDir for a directory or
	// fs.ModeSymlink for a link; setuid, setgid and sticky bits are kept.
	Mode     fs.FileMode
	UID, GID int
	Data     []byte // regular files
	Target   string // symbolic links
}

// File is a regular file owned by root.
func File(p string, mode fs.FileMode, data []byte) Entry {
	return Entry{Path: p, Mode: mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky), Data: data}
}

// Dir is a directory owned by root.
func Dir(p string, mode fs.FileMode) Entry {
	return Entry{Path: p, Mode: fs.ModeDir | mode.Perm() | mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)}
}

// Symlink is a symbolic link owned by root.
func Symlink(p, target string) Entry {
	return Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Target: target}
}

// Layer is one layer of an image: its entries and the history line that
// describes it.
type Layer struct {
	Comment string
	Entries []Entry
}

// Platform is the only one Arca's images are built for today.
const (
	OS           = "linux"
	Architecture = "amd64"
)

// Spec describes an image. Everything that ends up in the image comes from
// here, so equal specs give equal digests.
type Spec struct {
	Layers     []Layer
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	WorkingDir string
	Labels     map[string]string
	// Created is the image's creation time and the modification time of
	// every file in it. Pass a time derived from the inputs (the commit
	// time, SOURCE_DATE_EPOCH), never time.Now, to stay reproducible.
	Created time.Time
}

// Build assembles an OCI image for linux/amd64 from the spec.
func Build(s Spec) (v1.Image, error) {
	created := s.Created.UTC().Truncate(time.Second)
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: Architecture,
		OS:           OS,
		Created:      v1.Time{Time: created},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: s.Entrypoint,
			Cmd:        s.Cmd,
			Env:        s.Env,
			User:       s.User,
			WorkingDir: s.WorkingDir,
			Labels:     s.Labels,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	adds := make([]mutate.Addendum, 0, len(s.Layers))
	for i, l := range s.Layers {
		layer, err := NewLayer(l.Entries, created)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, l.Comment, err)
		}
		adds = append(adds, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "arca internal/image", Comment: l.Comment},
		})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	return img, nil
}

// NewLayer writes the entries as a tar archive, sorted by path with missing
// parent directories added (0755, root), every entry owned by its UID/GID
// with mtime, and compresses it with gzip. The compressed bytes are kept in
// memory, so pushing or writing the layer again does not compress it again.
func NewLayer(entries []Entry, mtime time.Time) (v1.Layer, error) {
	tarBytes, err := layerTar(entries, mtime)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// The gzip header stays empty (no name, no mtime, OS "unknown"): the
	// compressed bytes depend on the tar bytes alone.
	if _, err := zw.Write(tarBytes); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

func layerTar(entries []Entry, mtime time.Time) ([]byte, error) {
	byPath := map[string]Entry{}
	for _, e := range entries {
		p := path.Clean(e.Path)
		if !path.IsAbs(e.Path) || p == "/" {
			return nil, fmt.Errorf("entry path %q: want an absolute path below /", e.Path)
		}
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("entry path %q given twice", p)
		}
		e.Path = p
		byPath[p] = e
	}
	for p := range byPath {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if parent, ok := byPath[d]; !ok {
				byPath[d] = Dir(d, 0o755)
			} else if !parent.Mode.IsDir() {
				return nil, fmt.Errorf("entry %q is inside %q, which is not a directory", p, d)
			}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	// A parent's path is a prefix of its children's, so it sorts first.
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, p := range paths {
		e := byPath[p]
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    int64(e.Mode.Perm()),
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: mtime,
		}
		if e.Mode&fs.ModeSetuid != 0 {
			h.Mode |= 0o4000
		}
		if e.Mode&fs.ModeSetgid != 0 {
			h.Mode |= 0o2000
		}
		if e.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.Mode.IsDir():
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case e.Mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.Target
			if e.Target == "" {
				return nil, fmt.Errorf("symlink %q has no target", p)
			}
		case e.Mode.IsRegular():
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Data))
		default:
			return nil, fmt.Errorf("entry %q: unsupported mode %s", p, e.Mode)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("tar data %s: %w", p, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Sizes returns the image's size as pulled (compressed layers, config and
// manifest) and unpacked (uncompressed layers).
func Sizes(img v1.Image) (compressed, uncompressed int64, err error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range layers {
		c, err := l.Size()
		if err != nil {
			return 0, 0, err
		}
		compressed += c
		rc, err := l.Uncompressed()
		if err != nil {
			return 0, 0, err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return 0, 0, err
		}
		uncompressed += n
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return 0, 0, err
	}
	m, err := img.RawManifest()
	if err != nil {
		return 0, 0, err
	}
	return compressed + int64(len(cfg)) + int64(len(m)), uncompressed, nil
}
