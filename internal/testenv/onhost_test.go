package testenv_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/arca-backup/arca/internal/testenv"
)

// TestServicesOnHost: OnHost binds MinIO and Azurite to the given address
// (here a second loopback address; in node tests cp.HostIP), and their
// endpoints name it.
func TestServicesOnHost(t *testing.T) {
	const host = "127.0.0.2"
	m := testenv.StartMinIO(t, testenv.OnHost(host))
	if !strings.HasPrefix(m.Endpoint, host+":") {
		t.Fatalf("minio endpoint %s", m.Endpoint)
	}
	// The client dials the endpoint: MinIO serves S3 on that address (it
	// may listen on loopback too).
	m.MakeBucket(t, "onhost")
	a := testenv.StartAzurite(t, testenv.OnHost(host))
	if !strings.HasPrefix(a.Endpoint, "http://"+host+":") {
		t.Fatalf("azurite endpoint %s", a.Endpoint)
	}
	resp, err := http.Get(a.Endpoint + "?comp=list")
	if err != nil {
		t.Fatalf("azurite on %s: %v", host, err)
	}
	resp.Body.Close()
}
