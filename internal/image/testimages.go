package image

import (
	"fmt"
	"io/fs"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testImageTime is the creation time of the test images: they are built
// from files on this machine, not from a commit, so a fixed time keeps them
// reproducible.
var testImageTime = time.Unix(0, 0).UTC()

// PauseUID is the user the pause image runs as, as Kubernetes' own pause
// image does.
const PauseUID = 65535

// Pause builds the pod sandbox ("pause") image from a static pause binary
// (hack/pause): /pause as the entrypoint, run as user 65535.
func Pause(pause []byte) (v1.Image, error) {
	if err := CheckStaticBinary(pause); err != nil {
		return nil, fmt.Errorf("pause image: pause binary: %w", err)
	}
	uid := fmt.Sprint(PauseUID)
	return Build(Spec{
		Layers:     []Layer{{Comment: "pause", Entries: []Entry{File("/pause", 0o755, pause)}}},
		Entrypoint: []string{"/pause"},
		User:       uid + ":" + uid,
		Labels:     map[string]string{LabelTitle: "arca-test-pause", LabelSource: Source},
		Created:    testImageTime,
	})
}

// BusyboxApplets are the commands the busybox image links to /bin/busybox:
// what test pods and hooks run.
var BusyboxApplets = []string{
	"base64", "basename", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dirname", "du",
	"echo", "env", "false", "find", "grep", "gzip", "head", "hostname", "id", "kill", "ln", "ls",
	"md5sum", "mkdir", "mktemp", "mv", "nc", "printf", "ps", "pwd", "readlink", "rm", "rmdir", "sed",
	"seq", "sh", "sha1sum", "sha256sum", "sleep", "sort", "stat", "sync", "tail", "tar", "tee", "test",
	"timeout", "touch", "tr", "true", "truncate", "uname", "uniq", "wc", "wget", "xargs", "yes",
}

// BusyboxPath is where Debian's busybox-static installs busybox, and where
// the busybox image holds it.
const BusyboxPath = "/bin/busybox"

// Busybox builds the small application image the tests run: a static
// busybox as /bin/busybox with a symbolic link per applet in /bin, /tmp,
// and root and nobody in /etc/passwd. It runs as root (test pods write
// into volumes whatever their owner) and starts `sh` unless told otherwise.
func Busybox(busybox []byte) (v1.Image, error) {
	if err := CheckStaticBinary(busybox); err != nil {
		return nil, fmt.Errorf("busybox image: %s: %w (install Debian's busybox-static: make deps)", BusyboxPath, err)
	}
	entries := []Entry{
		File(BusyboxPath, 0o755, busybox),
		File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")),
		File("/etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")),
		Dir("/root", 0o700),
		Dir("/tmp", 0o777|fs.ModeSticky),
	}
	for _, a := range BusyboxApplets {
		entries = append(entries, Symlink("/bin/"+a, "busybox"))
	}
	return Build(Spec{
		Layers:  []Layer{{Comment: "busybox", Entries: entries}},
		Cmd:     []string{"sh"},
		Env:     []string{"PATH=/bin"},
		Labels:  map[string]string{LabelTitle: "arca-test-busybox", LabelSource: Source},
		Created: testImageTime,
	})
}
