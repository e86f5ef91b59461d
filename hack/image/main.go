// Command image builds the extension image (`make image`) without a Docker
// daemon: it compiles arca statically from this source tree with the
// extensionimage tag (only the commands that run in the cluster), assembles
// the image with internal/image, writes a docker-archive tarball and
// optionally pushes it. The same inputs (source, version, revision, time) give the
// same digest.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/arca-backup/arca/internal/extension"
	"github.com/arca-backup/arca/internal/image"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		version  = flag.String("version", "dev", "version baked into arca and the image labels")
		revision = flag.String("revision", "", "commit the image is built from (label org.opencontainers.image.revision)")
		created  = flag.String("created", os.Getenv("SOURCE_DATE_EPOCH"), "image time in Unix seconds: the commit time or SOURCE_DATE_EPOCH (never now, to stay reproducible)")
		caBundle = flag.String("ca-bundle", image.HostCABundle, "PEM bundle of trusted roots (Debian's ca-certificates)")
		output   = flag.String("output", "bin/arca-image.tar", "docker-archive tarball to write (empty: none)")
		tag      = flag.String("tag", "", "name stored in the tarball (default "+extension.DefaultImageRepository+":VERSION, the image `arca extension install` deploys by default)")
		push     = flag.String("push", "", "also push to REGISTRY/REPOSITORY:TAG (credentials from ~/.docker/config.json)")
		insecure = flag.Bool("insecure", false, "push over plain HTTP")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if *created == "" {
		return fmt.Errorf("no image time: pass --created UNIX_SECONDS or set SOURCE_DATE_EPOCH (make image uses the commit time)")
	}
	secs, err := strconv.ParseInt(*created, 10, 64)
	if err != nil {
		return fmt.Errorf("--created %q: want Unix seconds", *created)
	}
	if *tag == "" {
		*tag = extension.DefaultImageRepository + ":" + *version
	}
	ca, err := os.ReadFile(*caBundle)
	if err != nil {
		return fmt.Errorf("CA bundle: %w (install Debian's ca-certificates: make deps)", err)
	}
	ctx := context.Background()
	start := time.Now()
	dir, err := image.ModuleDir(".")
	if err != nil {
		return err
	}
	arca, err := image.BuildArca(ctx, dir, *version)
	if err != nil {
		return err
	}
	img, err := image.Extension(image.ExtensionOptions{
		Arca: arca, CABundle: ca, Version: *version, Revision: *revision, Created: time.Unix(secs, 0),
	})
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	compressed, uncompressed, err := image.Sizes(img)
	if err != nil {
		return err
	}
	fmt.Printf("image %s digest %s: %.1f MiB compressed, %.1f MiB uncompressed (built in %s)\n",
		*tag, digest, mib(compressed), mib(uncompressed), time.Since(start).Round(100*time.Millisecond))
	if *output != "" {
		if err := image.WriteArchive(*output, *tag, img); err != nil {
			return err
		}
		fmt.Printf("wrote %s (docker load -i, kind load image-archive, ctr -n k8s.io images import)\n", *output)
	}
	if *push != "" {
		d, err := image.Push(ctx, img, *push, image.PushOptions{Insecure: *insecure})
		if err != nil {
			return err
		}
		fmt.Printf("pushed %s@%s\n", *push, d)
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
