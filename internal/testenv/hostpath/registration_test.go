package hostpath

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// TestRegistration plays the kubelet's plugin watcher against the
// registration socket: GetInfo, then NotifyRegistrationStatus.
func TestRegistration(t *testing.T) {
	root := t.TempDir() // a kubelet root dir
	endpoint := filepath.Join(t.TempDir(), "csi.sock")
	var logged []string
	r, err := Register(root, testDriver, endpoint, func(f string, a ...any) { logged = append(logged, f) })
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "plugins_registry", testDriver+"-reg.sock")
	if r.Socket != want {
		t.Fatalf("socket %s, want %s", r.Socket, want)
	}
	if fi, err := os.Stat(want); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("registration socket %s: %v, %v", want, fi, err)
	}
	conn, err := grpc.NewClient("unix://"+r.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := registerapi.NewRegistrationClient(conn)
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := client.GetInfo(c, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.GetType() != registerapi.CSIPlugin || info.GetName() != testDriver || info.GetEndpoint() != endpoint ||
		!slices.Equal(info.GetSupportedVersions(), []string{"1.0.0"}) {
		t.Errorf("GetInfo = %v; want CSIPlugin %s at %s, versions [1.0.0]", info, testDriver, endpoint)
	}

	if _, err := client.NotifyRegistrationStatus(c, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "version 2.0 not supported"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(c); err == nil || !strings.Contains(err.Error(), "version 2.0 not supported") {
		t.Errorf("Wait after a refusal: %v, want the kubelet's error", err)
	}
	if _, err := client.NotifyRegistrationStatus(c, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.Wait(c); err != nil {
		t.Errorf("Wait after registration: %v", err)
	}
	if len(logged) != 2 {
		t.Errorf("logged %q, want one line per notification", logged)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := r.Wait(short); err == nil || !strings.Contains(err.Error(), r.Socket) {
		t.Errorf("Wait without a notification: %v, want a timeout naming the socket", err)
	}

	r.Stop()
	if _, err := os.Stat(want); !os.IsNotExist(err) {
		t.Errorf("socket left after Stop (the kubelet would keep the driver): %v", err)
	}
}
