package azure_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/arca-backup/arca/internal/testenv"
)

// The limitation docs/storage.md states: the pinned Azurite does not
// implement blob immutability policies nor legal holds (HTTP 501), so the
// azure backend offers no retention lock (S3 Object Lock has one). When an
// Azurite that implements them is pinned this test fails: then build and
// test version-level immutability for azure:// the way s3:// has it.
func TestAzuriteHasNoImmutability(t *testing.T) {
	a := testenv.StartAzurite(t)
	c, err := azblob.NewClientFromConnectionString(a.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.CreateContainer(ctx, "immutability", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UploadBuffer(ctx, "immutability", "x", []byte("abc"), nil); err != nil {
		t.Fatal(err)
	}
	bc := c.ServiceClient().NewContainerClient("immutability").NewBlobClient("x")
	_, err = bc.SetImmutabilityPolicy(ctx, time.Now().Add(time.Hour), &blob.SetImmutabilityPolicyOptions{})
	notImplemented(t, "SetImmutabilityPolicy", err)
	_, err = bc.SetLegalHold(ctx, true, nil)
	notImplemented(t, "SetLegalHold", err)
}

func notImplemented(t *testing.T, op string, err error) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != http.StatusNotImplemented {
		t.Fatalf("%s on Azurite: %v; Azurite may now implement blob immutability: build it for azure:// (docs/storage.md)", op, err)
	}
}
