package testenv_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/arca-backup/arca/internal/testenv"
)

func TestAzuriteSmoke(t *testing.T) {
	az := testenv.StartAzurite(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cred, err := azblob.NewSharedKeyCredential(az.Account, az.Key)
	if err != nil {
		t.Fatal(err)
	}
	client, err := azblob.NewClientWithSharedKeyCredential(az.Endpoint+"/", cred, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateContainer(ctx, "smoke", nil); err != nil {
		t.Fatalf("create container: %v", err)
	}
	want := []byte("hello from arca")
	if _, err := client.UploadBuffer(ctx, "smoke", "dir/blob", want, nil); err != nil {
		t.Fatalf("upload: %v", err)
	}
	// The connection string reaches the same account.
	csClient, err := azblob.NewClientFromConnectionString(az.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := csClient.DownloadStream(ctx, "smoke", "dir/blob", nil)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("downloaded %q, %v; want %q", got, err, want)
	}
}
