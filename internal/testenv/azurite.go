package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// AzuriteAccount and AzuriteKey are Azurite's well-known development
// account and key (public, documented by Microsoft; not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is a running Azurite blob service.
type Azurite struct {
	// Endpoint is the account's blob service URL,
	// http://127.0.0.1:<port>/devstoreaccount1.
	Endpoint string
	Account  string
	Key      string
	Port     int
	Dir      string // workspace (blob data and metadata)
	Process  *Process
}

// ConnectionString is the Azure Storage connection string for the account.
func (a *Azurite) ConnectionString() string {
	return fmt.Sprintf("DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s;", a.Account, a.Key, a.Endpoint)
}

// StartAzurite starts Azurite's blob service (tools/azurite, built by `make
// tools`) on a free port of 127.0.0.1 (or OnHost's address) with a fresh
// workspace. It is stopped when the test ends.
func StartAzurite(t T, opts ...ServiceOption) *Azurite {
	t.Helper()
	so := serviceOpts(opts)
	bin := Binary(t, "azurite-blob")
	a := &Azurite{Account: AzuriteAccount, Key: AzuriteKey, Dir: tempDir(t, "arca-azurite-")}
	start := time.Now()
	for attempt := 1; ; attempt++ {
		a.Port = FreePort(t)
		a.Endpoint = "http://" + net.JoinHostPort(so.host, strconv.Itoa(a.Port)) + "/" + a.Account
		args := []string{
			"--location", a.Dir,
			"--blobHost", so.host,
			"--blobPort", strconv.Itoa(a.Port),
			"--skipApiVersionCheck", // the SDK may be newer than the emulator
			"--disableProductStyleUrl",
			"--disableTelemetry",
			"--loose",
			"--silent",
		}
		a.Process = StartProcess(t, "azurite", bin, args, nil, a.Dir)
		// Any HTTP answer (an unauthenticated request gets 403) means the
		// server listens.
		ready, err := waitHTTP(a.Process, a.Endpoint+"?comp=list", 30*time.Second, func(int) bool { return true })
		if ready {
			break
		}
		// The port can be taken between FreePort and the bind; try another.
		if attempt < 3 && portInUse(a.Process.Log()) {
			a.Process.Stop()
			continue
		}
		t.Fatalf("azurite did not start: %v\n%s", err, a.Process.Log())
	}
	t.Logf("azurite ready at %s in %s", a.Endpoint, time.Since(start).Round(time.Millisecond))
	return a
}

// waitHTTP polls url until ok accepts the status, the process exits, or
// timeout passes.
func waitHTTP(p *Process, url string, timeout time.Duration, ok func(status int) bool) (bool, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("%s exited: %v", p.Name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if ok(resp.StatusCode) {
				cancel()
				return true, nil
			}
			err = fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
		}
		cancel()
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return false, fmt.Errorf("not ready after %s: %v", timeout, last)
}
