package azure_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/arca-backup/arca/internal/storage"
	"github.com/arca-backup/arca/internal/storage/azure"
	"github.com/arca-backup/arca/internal/storage/storagetest"
	"github.com/arca-backup/arca/internal/testenv"
)

var seq atomic.Int64

func uniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

func keyConfig(az *testenv.Azurite, containerName string) azure.Config {
	return azure.Config{Account: az.Account, AccountKey: az.Key, Endpoint: az.Endpoint, Container: containerName}
}

func open(t *testing.T, cfg azure.Config) *azure.Backend {
	t.Helper()
	be, err := azure.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return be
}

// The suite against Azurite, with shared-key auth; each subtest gets its
// own prefix in one container. Small blocks make the 24 MiB file take the
// staged-block path with several blocks in flight.
func TestSuiteAzurite(t *testing.T) {
	az := testenv.StartAzurite(t)
	cfg := keyConfig(az, "suite")
	cfg.CreateContainer = true
	cfg.BlockSize = 1 << 20
	open(t, cfg)
	storagetest.RunSuite(t, func(t *testing.T) storage.Backend {
		c := cfg
		c.CreateContainer = false
		c.Prefix = "repos/" + uniqueName("r")
		return open(t, c)
	})
}

func TestAuthModes(t *testing.T) {
	az := testenv.StartAzurite(t)
	ctx := context.Background()
	cfg := keyConfig(az, "auth")
	cfg.CreateContainer = true
	keyBE := open(t, cfg)
	h := storage.Handle{Type: storage.KeyFile, Name: "k1"}
	if err := keyBE.Save(ctx, h, 3, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}

	// Connection string.
	csBE := open(t, azure.Config{ConnectionString: az.ConnectionString(), Container: "auth"})
	if got, err := storage.ReadAll(ctx, csBE, h); err != nil || string(got) != "abc" {
		t.Fatalf("read with connection string: %q, %v", got, err)
	}
	if !strings.HasPrefix(csBE.Location(), "azure://devstoreaccount1/auth") {
		t.Errorf("Location = %s", csBE.Location())
	}

	// Container SAS token.
	cred, err := container.NewSharedKeyCredential(az.Account, az.Key)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := container.NewClientWithSharedKeyCredential(az.Endpoint+"/auth", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	perms := sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, Delete: true, List: true}
	sasURL, err := cc.GetSASURL(perms, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(sasURL)
	sasBE := open(t, azure.Config{Account: az.Account, SASToken: u.RawQuery, Endpoint: az.Endpoint, Container: "auth", Prefix: "viasas"})
	h2 := storage.Handle{Type: storage.LockFile, Name: "l1"}
	if err := sasBE.Save(ctx, h2, 2, strings.NewReader("hi")); err != nil {
		t.Fatalf("save with SAS: %v", err)
	}
	if err := sasBE.Save(ctx, h2, 2, strings.NewReader("hi")); !storage.IsExist(err) {
		t.Fatalf("second save with SAS: %v", err)
	}

	// A read-only SAS cannot write: permanent, with a hint.
	roURL, err := cc.GetSASURL(sas.ContainerPermissions{Read: true, List: true}, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	ru, _ := url.Parse(roURL)
	roBE := open(t, azure.Config{Account: az.Account, SASToken: "?" + ru.RawQuery, Endpoint: az.Endpoint, Container: "auth"})
	err = roBE.Save(ctx, storage.Handle{Type: storage.LockFile, Name: "l2"}, 1, strings.NewReader("x"))
	if !storage.IsPermanent(err) || !strings.Contains(err.Error(), "SAS") {
		t.Fatalf("write with a read-only SAS: %v, want a permanent access-denied error", err)
	}
}

func TestOpenErrors(t *testing.T) {
	az := testenv.StartAzurite(t)
	ctx := context.Background()
	cases := []struct {
		name string
		cfg  azure.Config
		want string
	}{
		{"missing container", keyConfig(az, "nope"), `container "nope" does not exist`},
		{"wrong key", azure.Config{Account: az.Account, AccountKey: "d3Jvbmcga2V5", Endpoint: az.Endpoint, Container: "nope"}, "access denied"},
		{"bad key", azure.Config{Account: az.Account, AccountKey: "not base64!", Endpoint: az.Endpoint, Container: "c"}, "invalid account key"},
		{"no credentials", azure.Config{Account: az.Account, Endpoint: az.Endpoint, Container: "c"}, "exactly one of"},
		{"no container", azure.Config{Account: az.Account, AccountKey: az.Key}, "no container"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := azure.Open(ctx, c.cfg)
			if err == nil || !storage.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: %v; want a permanent error containing %q", err, c.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		cfg := keyConfig(az, "c")
		cfg.Endpoint = "http://" + testenv.Addr(testenv.FreePort(t)) + "/devstoreaccount1"
		cfg.SDKRetries = -1
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, err := azure.Open(ctx, cfg)
		if err == nil || !strings.Contains(err.Error(), "connect") {
			t.Fatalf("Open of an unreachable endpoint: %v", err)
		}
	})
}

// Concurrent Saves of one name on the staged-block path: exactly one
// commit wins, the others get IsExist, and the blob is one writer's bytes.
func TestConcurrentLargeSameName(t *testing.T) {
	az := testenv.StartAzurite(t)
	cfg := keyConfig(az, "race")
	cfg.CreateContainer = true
	cfg.BlockSize = 1 << 20
	be := open(t, cfg)
	ctx := context.Background()
	h := storage.Handle{Type: storage.PackFile, Name: storagetest.RandomName()}
	const n = 4
	datas := make([][]byte, n)
	errs := make([]error, n)
	done := make(chan int)
	for i := range n {
		datas[i] = storagetest.RandomData(3<<20 + i)
		go func() {
			errs[i] = be.Save(ctx, h, -1, strings.NewReader(string(datas[i])))
			done <- i
		}()
	}
	for range n {
		<-done
	}
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("two Saves of one name succeeded (%d and %d)", winner, i)
			}
			winner = i
		case !storage.IsExist(err):
			t.Fatalf("Save %d: %v, want nil or IsExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Save succeeded")
	}
	got, err := storage.ReadAll(ctx, be, h)
	if err != nil || string(got) != string(datas[winner]) {
		t.Fatalf("stored blob is not the winner's: %d bytes, %v", len(got), err)
	}
}
