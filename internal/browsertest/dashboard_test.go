package browsertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/arca-backup/arca/internal/cli"
	"github.com/arca-backup/arca/internal/clusterdriver"
	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
)

// chromiumFlags are the launch flags that work on the test machines
// (docs/testing.md): headless, no sandbox (root in a container), nothing
// that reaches the network on its own, a fresh profile.
func chromiumFlags(exe, profile, spki string) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
		// Trust exactly the vault's self-signed certificate (its public
		// key's SHA-256), not every certificate.
		chromedp.Flag("ignore-certificate-errors-spki-list", spki),
	}
}

// spkiHash is the base64 SHA-256 of a PEM certificate's public key, as
// --ignore-certificate-errors-spki-list wants it.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM certificate", certFile)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browser is a test's Chromium tab on the dashboard.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
}

func (b *browser) run(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v\npage: %s", err, b.text())
	}
}

// eval returns the value of a JavaScript expression in the page.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// textOf is the visible text of the first element sel matches.
func (b *browser) textOf(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v\npage: %s", sel, err, b.text())
	}
	return v
}

// text is the page's visible text (for failure messages).
func (b *browser) text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// open goes to a dashboard route, as following a link does, and waits
// until the page shows it.
func (b *browser) open(route string) {
	b.t.Helper()
	want, _ := json.Marshal("#" + route)
	b.eval(`(() => { const want = ` + string(want) + `; document.getElementById('main').dataset.shown = '';
		if (location.hash === want) window.dispatchEvent(new HashChangeEvent('hashchange')); else location.hash = want; return '' })()`)
	b.waitJS("page "+route, `document.getElementById('main').dataset.shown === `+string(want), 30*time.Second)
	// How long the page took to show, its API calls included, measured
	// in the page (route() to rendered): printed for docs/benchmarks.md.
	b.t.Logf("page %s rendered in %s ms", route, b.eval(`document.getElementById('main').dataset.renderMs`))
}

// waitView waits until the router has shown a page.
func (b *browser) waitView() {
	b.t.Helper()
	b.waitJS("a page", `!!document.getElementById('main').dataset.shown && !!document.querySelector('#view h1')`, 30*time.Second)
}

// waitJS polls a JavaScript expression until it is true.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: not after %s (%v)\npage: %s", what, timeout, err, b.text())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", p)
}

func (b *browser) signIn(token string) {
	b.t.Helper()
	b.open("/signin")
	// By keyboard: the field has focus; type the token and press Enter.
	b.waitJS("focus on the token field", `document.activeElement && document.activeElement.id === 'token'`, 10*time.Second)
	b.run(30*time.Second,
		chromedp.KeyEvent(token+"\r"),
		chromedp.WaitVisible(chromedp.CSS(`#top:not([hidden])`)))
	b.waitView()
}

func (b *browser) signOut() {
	b.t.Helper()
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#signin-form`)))
}

// auditJS checks the page on screen against the dashboard's accessibility
// rules and returns the problems, one per line: every control has a
// label (a <label>, aria-label or aria-labelledby; a button its text) and
// is reachable by keyboard (not tabindex -1); every visible text has
// WCAG AA contrast with the background it is drawn on (4.5:1, or 3:1 for
// large text), disabled controls excepted as WCAG allows.
const auditJS = `(() => {
  const problems = [];
  const rgb = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null; const v = m[1].split(',').map(Number); return {r: v[0], g: v[1], b: v[2], a: v.length > 3 ? v[3] : 1}; };
  const lum = (c) => { const f = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : Math.pow((x + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const bgOf = (el) => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
  const name = (el) => el.id ? '#' + el.id : el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ')[0] : '');
  const visible = (el) => { const r = el.getBoundingClientRect(); const st = getComputedStyle(el); return r.width > 0 && r.height > 0 && st.visibility !== 'hidden' && st.display !== 'none' && !el.closest('.visually-hidden'); };
  for (const el of document.querySelectorAll('input, select, textarea, button, a[href]')) {
    if (!visible(el)) continue;
    const labelled = (el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') ||
      ((el.tagName === 'BUTTON' || el.tagName === 'A') && el.textContent.trim());
    if (!labelled) problems.push('no label: ' + name(el));
    if (el.tabIndex < 0) problems.push('not reachable by keyboard: ' + name(el));
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || seen.has(el) || el.closest('svg') || el.closest(':disabled') || !visible(el)) continue;
    seen.add(el);
    const st = getComputedStyle(el);
    const fg = rgb(st.color); const bg = bgOf(el);
    if (!fg) continue;
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(st.fontSize); const bold = Number(st.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) problems.push('contrast ' + ratio.toFixed(2) + ' < ' + need + ': ' + name(el) + ' "' + n.textContent.trim().slice(0, 40) + '" ' + st.color + ' on ' + JSON.stringify(bg));
  }
  return problems.join('\n');
})()`

// audit runs auditJS on the page on screen; a problem fails the test.
func (b *browser) audit(page string) {
	b.t.Helper()
	if p := b.eval(auditJS); p != "" {
		b.t.Errorf("accessibility of %s:\n%s", page, p)
	}
}

// TestDashboardInBrowser runs the dashboard the way a person uses it: real
// Chromium (Debian's), driven by chromedp, against `arca vault serve`'s
// server (server.Run) and a cluster with one real node where `arca
// quickstart` installed the extension as a pod from the project's image.
// It signs in, sees the protected instance, backs it up and follows the
// job to Completed, opens the recovery point, previews a restore with a
// namespace mapping (a dry run), starts it and finds the objects back in
// the cluster; a Backup Reader is refused a restore with the action and
// scope shown; an expired token returns to sign-in with a message.
// Screenshots go to $ARCA_SCREENSHOTS (else the test's temporary directory).
func TestDashboardInBrowser(t *testing.T) {
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: the dashboard's browser test needs Debian's chromium (hack/install-deps.sh installs it: apt-get install chromium): %v", err)
	}
	shots := os.Getenv("ARCA_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ctrllog.SetLogger(logr.Discard())

	// The cluster: one real node with a CSI driver, an application namespace.
	cp := testenv.StartControlPlane(t, testenv.ControlPlaneOptions{Nodes: 1})
	testenv.StartHostPathCSI(t, cp) // snapshot CRDs, controller and a CSI driver: the prerequisites the vault checks
	cs := cp.Clientset(t)
	kubeconfig := cp.KubeconfigFile(t)
	image := testenv.ExtensionImage(t, cp.Registry)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const objects = 5
	for i := range objects {
		if _, err := cs.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("order-%d", i)},
			Data: map[string]string{"item": fmt.Sprintf("tea-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The vault, as `arca vault init` and `arca vault serve` run it.
	dataDir := t.TempDir()
	// The vault's log (access and audit lines) goes to a file, shown when
	// the test fails.
	vaultLog, err := os.Create(filepath.Join(t.TempDir(), "vault.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(vaultLog.Name())
			t.Logf("vault log (last 8 KiB):\n%s", b[max(0, len(b)-8192):])
		}
	})
	opts := server.Options{Listen: "127.0.0.1:0", DataDir: dataDir, Log: slog.New(slog.NewJSONHandler(vaultLog, nil)),
		Clusters: clusterdriver.NewTrustedAccess, RunnerInterval: time.Second, SchedulerInterval: 10 * time.Second}
	ini, err := server.Init(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	opts.Ready = func(addr string) { ready <- addr }
	vctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(vctx, opts) }()
	t.Cleanup(func() { stop(); <-done })
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("vault: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("vault not listening after 30s")
	}
	vaultURL := "https://" + addr
	arca := func(args ...string) string {
		t.Helper()
		root := cli.NewRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append(args, "--vault-url", vaultURL, "--token", ini.Token, "--ca-cert", ini.CertFile))
		if err := root.ExecuteContext(ctx); err != nil {
			t.Fatalf("arca %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}

	// Protect the namespace the way the README says: arca quickstart.
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("dashboard-test-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := "file://" + filepath.Join(t.TempDir(), "var", "backups", "arca")
	t.Logf("quickstart:\n%s", arca("quickstart", "--kubeconfig", kubeconfig, "--storage", repo, "--password-file", pw, "--image", image,
		"--vault", "v", "--cluster-name", "c1", "--policy", "daily", "--instance", "shop", "--include-namespaces", "shop", "--no-backup", "--allow-verification",
		"--extension-timeout", "4m"))
	// A Backup Reader, and a token that expires soon.
	var created struct {
		Token string `json:"token"`
	}
	if out := arca("token", "create", "reader", "--principal", "user:reader", "-o", "json"); json.Unmarshal([]byte(out), &created) != nil || created.Token == "" {
		t.Fatalf("token create: %s", out)
	}
	readerTok := created.Token
	arca("role", "assign", "--principal", "user:reader", "--role", "Backup Reader", "--scope", "/vaults/v")

	// Take away a role quickstart assigned (the extension's Storage
	// Contributor at the storage location): the instance page's
	// validation must find it missing and assign it again.
	var ras struct {
		Items []struct{ ID, Role string } `json:"items"`
	}
	if out := arca("role", "list", "--principal", "extension:c1", "-o", "json"); json.Unmarshal([]byte(out), &ras) != nil || len(ras.Items) == 0 {
		t.Fatalf("role list: %s", out)
	}
	for _, ra := range ras.Items {
		if ra.Role == "Storage Contributor" {
			arca("role", "remove", ra.ID)
		}
	}

	// The browser.
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), chromiumFlags(exe, t.TempDir(), spkiHash(t, ini.CertFile))...)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(cancelB)
	// The page's first load over HTTPS: the document and its modules.
	// The first run starts the browser and lives as long as its context:
	// no timeout on it (later steps derive theirs from it).
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: bctx, base: vaultURL, shots: shots}

	// Sign in: the page first shows the sign-in form.
	loadStart := time.Now()
	b.run(60*time.Second, chromedp.Navigate(vaultURL+"/"), chromedp.WaitVisible(chromedp.CSS(`#signin-form`)))
	t.Logf("first load: sign-in form shown in %s; %s bytes transferred for the page and its assets", time.Since(loadStart).Round(time.Millisecond),
		b.eval(`String(performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation')).reduce((a, e) => a + (e.encodedBodySize || 0), 0))`))
	b.screenshot("signin")
	b.audit("sign-in")
	b.signIn(ini.Token)

	// The overview shows the protected instance on its cluster.
	b.waitJS("the instance on the overview", `!!document.querySelector('tr[data-instance="shop"]') && document.querySelector('tr[data-instance="shop"]').innerText.includes('Protected')`, 30*time.Second)
	if txt := b.text(); !strings.Contains(txt, "Cluster c1") || !strings.Contains(txt, "Signed in as admin") {
		t.Fatalf("overview:\n%s", txt)
	}

	// Backup now, from the instance page; the job page follows it.
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`tr[data-instance="shop"] a`)))
	b.waitJS("the instance page", `location.hash === '#/instances/shop' && !!document.querySelector('#backup-now')`, 30*time.Second)
	b.screenshot("instance")
	b.audit("instance")
	// Validation finds the missing role, with its code and fix; "Assign
	// missing roles" assigns it and the checks pass.
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#validate`)))
	b.waitJS("the validation report", `!!document.querySelector('#assign-missing')`, 2*time.Minute)
	if rep := b.textOf(`#instance-result`); !strings.Contains(rep, "Failed") || !strings.Contains(rep, "extension:c1") {
		t.Fatalf("validation report:\n%s", rep)
	}
	b.screenshot("instance-validation")
	b.audit("validation report")
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#assign-missing`)))
	b.waitJS("the checks to pass after assigning", `!document.querySelector('#assign-missing') && !!document.querySelector('#instance-result .report-verdict') && document.querySelector('#instance-result .report-verdict').innerText.startsWith('Passed')`, 2*time.Minute)
	if out := arca("role", "list", "--principal", "extension:c1"); !strings.Contains(out, "Storage Contributor") {
		t.Fatalf("the missing role was not assigned:\n%s", out)
	}
	b.run(30*time.Second, chromedp.SendKeys(chromedp.CSS(`#backup-retention`), "P30D"), chromedp.Click(chromedp.CSS(`#backup-now`)))
	b.waitJS("the job page", `location.hash.startsWith('#/jobs/') && !!document.querySelector('#job-state')`, 30*time.Second)
	jobID := b.eval(`decodeURIComponent(location.hash.slice('#/jobs/'.length))`)
	seen := map[string]bool{}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		st := b.eval(`(document.querySelector('#job-state')||{dataset:{}}).dataset.state || ''`)
		if !seen[st] && st != "" {
			seen[st] = true
			t.Logf("job %s: %s", jobID, st)
			if st == "InProgress" {
				b.screenshot("job-in-progress")
			}
		}
		if st == "Completed" {
			break
		}
		if st == "Failed" || st == "Cancelled" || st == "CompletedWithWarnings" || time.Now().After(deadline) {
			t.Fatalf("backup job %s: %s\n%s", jobID, st, b.text())
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.waitJS("the job's items", `document.querySelector('#job-items').innerText.trim().startsWith('`+fmt.Sprint(objects)+`') || /^\d+/.test(document.querySelector('#job-items').innerText)`, 10*time.Second)
	counts := b.textOf(`#job-counts`)
	if !strings.Contains(counts, "configmaps") {
		t.Fatalf("job counts:\n%s", counts)
	}
	b.screenshot("job-completed")
	b.audit("job")

	// The recovery point of the backup.
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`#open-point`)))
	b.waitJS("the recovery point page", `location.hash === '#/points/rp-`+jobID+`' && !!document.querySelector('#restore-point')`, 30*time.Second)
	pointID := "rp-" + jobID
	// Kept for the 30 days asked for on the instance page.
	var rp struct {
		Time, ExpiresAt time.Time
	}
	if out := arca("recovery-point", "show", pointID, "--vault", "v", "-o", "json"); json.Unmarshal([]byte(out), &rp) != nil ||
		rp.ExpiresAt.Sub(rp.Time) != 30*24*time.Hour {
		t.Fatalf("recovery point kept %s, want 30 days:\n%s", rp.ExpiresAt.Sub(rp.Time), out)
	}
	// Find an object in the point's contents (the extension reads the
	// repository for the vault): namespace shop, type configmaps,
	// order-3, and its YAML.
	b.waitJS("the point's namespaces", `!!document.querySelector('#namespaces-list button[data-name="shop"]')`, 2*time.Minute)
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#namespaces-list button[data-name="shop"]`)))
	b.waitJS("the namespace's types", `!!document.querySelector('#types-list button[data-name="configmaps"]')`, 2*time.Minute)
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#types-list button[data-name="configmaps"]`)))
	b.waitJS("the type's objects", `!!document.querySelector('#objects-list button[data-name="order-3"]')`, 2*time.Minute)
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#objects-list button[data-name="order-3"]`)))
	b.waitJS("the object's YAML", `!!document.querySelector('#object-yaml-text') && document.querySelector('#object-yaml-text').innerText.includes('tea-3')`, 2*time.Minute)
	// Its volumes, asked of the extension: the shop namespace has no
	// claims, so the section says the point holds none.
	b.waitJS("the point's volumes", `!!document.querySelector('#volumes-table')`, 2*time.Minute)
	if v := b.textOf(`#volumes`); !strings.Contains(v, "holds no volumes") {
		t.Fatalf("volumes section:\n%s", v)
	}
	b.screenshot("recovery-point")
	b.audit("recovery point")
	// Compare with the live cluster after changing one object there.
	cm, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, "order-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["item"] = "coffee-1"
	if _, err := cs.CoreV1().ConfigMaps("shop").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#diff-run`)))
	b.waitJS("the diff with the live cluster", `!!document.querySelector('#diff-counts')`, 2*time.Minute)
	if d := b.textOf(`#diff-result`); !strings.Contains(d, "order-1") || !strings.Contains(d, "coffee-1") || !strings.Contains(d, "1 changed") {
		t.Fatalf("diff with the live cluster:\n%s", d)
	}
	b.screenshot("recovery-point-diff")

	// Verify the point (restored into a sandbox namespace, compared, the
	// sandbox deleted); its page then shows the verdict.
	b.run(10*time.Second, chromedp.SetValue(chromedp.CSS(`#verify-read`), "100"), chromedp.Click(chromedp.CSS(`#verify-run`)))
	b.waitJS("the verification job", `location.hash.startsWith('#/jobs/') && !!document.querySelector('#job-state')`, 30*time.Second)
	b.waitJS("the verification to complete", `['Completed', 'Failed', 'CompletedWithWarnings', 'Cancelled'].includes((document.querySelector('#job-state')||{dataset:{}}).dataset.state)`, 4*time.Minute)
	if st := b.eval(`document.querySelector('#job-state').dataset.state`); st != "Completed" {
		t.Fatalf("verification job %s\n%s", st, b.text())
	}
	b.open("/points/" + pointID)
	b.waitJS("the verdict", `!!document.querySelector('#verification-verdict')`, 30*time.Second)
	if v := b.textOf(`#verification-verdict`); !strings.Contains(v, "Verified") || !strings.Contains(v, "sandbox deleted") {
		t.Fatalf("verdict: %s", v)
	}
	b.screenshot("recovery-point-verified")

	// Restore wizard: the point is chosen; restore namespace shop as
	// shop-restored; preview (dry run) first, then start and follow.
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`#restore-point`)), chromedp.WaitVisible(chromedp.CSS(`#restore-form`)))
	b.run(30*time.Second,
		chromedp.SetValue(chromedp.CSS(`#rs-include`), "shop"),
		chromedp.SendKeys(chromedp.CSS(`#rs-mapping`), "shop=shop-restored"),
		chromedp.Click(chromedp.CSS(`#rs-preview`)))
	b.waitJS("the restore preview", `!!document.querySelector('#preview-result')`, 3*time.Minute)
	b.waitJS("the preview's diff", `!!document.querySelector('#preview-diff')`, 2*time.Minute)
	preview := b.textOf(`#preview-result`)
	if !strings.Contains(preview, "Completed") || !strings.Contains(preview, "Created") {
		t.Fatalf("preview:\n%s", preview)
	}
	if l, err := cs.CoreV1().ConfigMaps("shop-restored").List(ctx, metav1.ListOptions{}); err == nil && len(l.Items) > 0 {
		t.Fatalf("the dry run wrote %d config maps", len(l.Items))
	}
	b.screenshot("restore-preview")
	b.audit("restore preview")
	b.waitJS("the start button", `!document.querySelector('#rs-start').disabled`, 10*time.Second)
	b.run(30*time.Second, chromedp.Click(chromedp.CSS(`#rs-start`)))
	b.waitJS("the restore job page", `location.hash.startsWith('#/jobs/') && !!document.querySelector('#job-state')`, 30*time.Second)
	b.waitJS("the restore job to complete", `(document.querySelector('#job-state')||{dataset:{}}).dataset.state === 'Completed'`, 4*time.Minute)
	b.screenshot("restore-completed")
	l, err := cs.CoreV1().ConfigMaps("shop-restored").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, cm := range l.Items {
		if strings.HasPrefix(cm.Name, "order-") {
			got[cm.Name] = cm.Data["item"]
		}
	}
	if len(got) != objects || got["order-3"] != "tea-3" {
		t.Fatalf("config maps in shop-restored: %v", got)
	}

	// Stop and resume protection from the instance page.
	b.open("/instances/shop")
	b.run(10*time.Second, chromedp.SetValue(chromedp.CSS(`#stop-mode`), "retain-forever"), chromedp.Click(chromedp.CSS(`#stop`)))
	b.waitJS("protection stopped", `!!document.querySelector('#resume') && document.querySelector('#protection-state').innerText.includes('Stopped')`, 30*time.Second)
	if out := arca("instance", "show", "shop", "--vault", "v"); !strings.Contains(out, "ProtectionStopped") {
		t.Fatalf("instance after stop:\n%s", out)
	}
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#resume`)))
	b.waitJS("protection resumed", `!!document.querySelector('#stop') && document.querySelector('#protection-state').innerText.includes('Protected')`, 30*time.Second)

	// Create a policy, then an invalid edit is refused naming the field.
	b.open("/policies/+new")
	b.run(10*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#pol-name`), "gold"),
		chromedp.SetValue(chromedp.CSS(`#pol-schedule`), "0 3 * * 0"),
		chromedp.SetValue(chromedp.CSS(`#pol-default`), "P14D"),
		chromedp.SetValue(chromedp.CSS(`#pol-weekly`), "P12W"),
		chromedp.SetValue(chromedp.CSS(`#pol-weekly-store`), "vault"),
		chromedp.SetValue(chromedp.CSS(`#pol-verify`), "weekly"),
		chromedp.Click(chromedp.CSS(`#pol-save`)))
	b.waitJS("the new policy's page", `location.hash === '#/policies/gold' && document.getElementById('main').dataset.shown === '#/policies/gold'`, 30*time.Second)
	if out := arca("policy", "show", "gold", "--vault", "v", "-o", "json"); !strings.Contains(out, `"P12W"`) || !strings.Contains(out, `"vault"`) ||
		!strings.Contains(out, `"weekly"`) {
		t.Fatalf("policy created in the browser:\n%s", out)
	}
	// A valid edit keeps what the form shows (verification included).
	b.run(10*time.Second, chromedp.SetValue(chromedp.CSS(`#pol-default`), "P21D"), chromedp.Click(chromedp.CSS(`#pol-save`)))
	b.waitJS("the saved edit", `!!document.querySelector('#view .notice.ok')`, 30*time.Second)
	if out := arca("policy", "show", "gold", "--vault", "v", "-o", "json"); !strings.Contains(out, `"P21D"`) || !strings.Contains(out, `"weekly"`) {
		t.Fatalf("policy after the edit:\n%s", out)
	}
	b.run(10*time.Second, chromedp.SetValue(chromedp.CSS(`#pol-default`), "PT1H"), chromedp.Click(chromedp.CSS(`#pol-save`)))
	b.waitJS("the refused edit", `!!document.querySelector('#view .notice.bad') && document.querySelector('#view .notice.bad').innerText.includes('retention.default.duration')`, 30*time.Second)

	// Assign a role on the access page.
	b.open("/access")
	b.run(10*time.Second,
		chromedp.SendKeys(chromedp.CSS(`#ra-principal`), "user:auditor"),
		chromedp.SetValue(chromedp.CSS(`#ra-role`), "Reader"),
		chromedp.Click(chromedp.CSS(`#assign-form button[type=submit]`)))
	b.waitJS("the new assignment", `document.getElementById('main').innerText.includes('user:auditor')`, 30*time.Second)
	if out := arca("role", "list", "--principal", "user:auditor"); !strings.Contains(out, "Reader") || !strings.Contains(out, "/vaults/v") {
		t.Fatalf("role assigned in the browser:\n%s", out)
	}

	// Delete the point (the vault keeps it soft-deleted), see it among the
	// soft-deleted ones, undelete it. The browser's confirmation dialog
	// is answered yes by replacing window.confirm in the page.
	b.open("/points/" + pointID)
	b.eval(`(() => { window.confirm = () => true; return '' })()`)
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#delete-point`)))
	b.waitJS("the point soft-deleted", `!!document.querySelector('#undelete-point')`, 30*time.Second)
	b.open("/points?deleted=only")
	b.waitJS("the point among the soft-deleted", `!!document.querySelector('tr[data-point="`+pointID+`"]')`, 10*time.Second)
	b.open("/points/" + pointID)
	b.run(10*time.Second, chromedp.Click(chromedp.CSS(`#undelete-point`)))
	b.waitJS("the point back", `!!document.querySelector('#delete-point') && !!document.querySelector('#restore-point')`, 30*time.Second)
	if out := arca("recovery-point", "show", pointID, "--vault", "v", "-o", "json"); !strings.Contains(out, `"Available"`) {
		t.Fatalf("point after undelete:\n%s", out)
	}

	// The other pages render (charts, policies, access with the audit log)
	// and a phone-width overview.
	b.open("/charts")
	b.waitJS("the charts", `document.querySelectorAll('svg.chart').length >= 3 && document.querySelectorAll('svg.chart circle').length > 0`, 10*time.Second)
	b.screenshot("charts")
	b.audit("charts")
	for _, page := range []string{"/jobs", "/points?deleted=include", "/policies", "/policies/daily", "/approvals"} {
		b.open(page)
		b.audit(page)
	}
	b.open("/access")
	b.waitJS("the audit log", `!!document.querySelector('#audit-table') && document.querySelector('#audit-table').innerText.includes('/restores')`, 10*time.Second)
	b.audit("access")
	// A code's entry from the user guide, served by the vault.
	b.open("/code/CSRFTokenInvalid")
	if txt := b.text(); !strings.Contains(txt, "reload the dashboard") {
		t.Fatalf("the code's page:\n%s", txt)
	}
	b.open("/")
	b.run(10*time.Second, chromedp.EmulateViewport(390, 844))
	b.waitView()
	b.screenshot("overview-phone")
	b.audit("overview at phone width")
	b.run(10*time.Second, chromedp.EmulateViewport(1280, 800))
	b.open("/")
	// The instance's storage used and dedup ratio, from the stored bytes
	// the extension reported for its backups.
	b.waitJS("storage used and dedup ratio on the overview", `(() => { const r = document.querySelector('tr[data-instance="shop"]'); return !!r && /\d\.\d\dx/.test(r.innerText) && !!document.evaluate("//div[text()='Storage used']", document).iterateNext(); })()`, 10*time.Second)
	b.screenshot("overview")
	b.audit("overview")
	b.signOut()

	// A Backup Reader sees the point but no restore action; opening the
	// wizard anyway, the vault refuses and the page shows the action and
	// the scope.
	b.signIn(readerTok)
	b.open("/points/" + pointID)
	b.waitJS("the reader's point page", `!!document.querySelector('#restore-hidden') && !document.querySelector('#restore-point')`, 10*time.Second)
	b.open("/restore?point=" + pointID)
	b.run(30*time.Second, chromedp.SendKeys(chromedp.CSS(`#rs-mapping`), "shop=shop-reader"), chromedp.Click(chromedp.CSS(`#rs-preview`)))
	b.waitJS("the refusal", `!!document.querySelector('.denied-action')`, 30*time.Second)
	action, scope := b.textOf(`.denied-action`), b.textOf(`.denied-scope`)
	if action != "restores/action" || scope != "/vaults/v" {
		t.Fatalf("refusal shows action %q scope %q\n%s", action, scope, b.text())
	}
	b.screenshot("reader-refused")
	b.audit("refusal")
	// An Owner revokes the reader's token: the reader's next page returns
	// to sign-in saying why.
	arca("token", "revoke", "reader")
	b.eval(`(() => { location.hash = '#/jobs'; return '' })()`)
	b.waitJS("the sign-in page after revocation", `location.hash === '#/signin' && !!document.querySelector('#signin-message')`, 30*time.Second)
	if msg := b.textOf(`#signin-message`); !strings.Contains(msg, "session ended") || !strings.Contains(msg, "revoked") {
		t.Fatalf("sign-in message after revocation: %q", msg)
	}

	// An expired token: signed in, the token runs out, the next page
	// returns to sign-in saying why.
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "vault.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	exp := time.Now().Add(6 * time.Second)
	short, _, err := server.CreateToken(ctx, st, "short", "admin", &exp)
	if err != nil {
		t.Fatal(err)
	}
	b.signIn(short)
	time.Sleep(time.Until(exp) + 500*time.Millisecond)
	b.eval(`(() => { location.hash = '#/jobs'; return '' })()`)
	b.waitJS("the sign-in page after expiry", `location.hash === '#/signin' && !!document.querySelector('#signin-message')`, 30*time.Second)
	msg := b.textOf(`#signin-message`)
	if !strings.Contains(msg, "session ended") || !strings.Contains(msg, "expired") {
		t.Fatalf("sign-in message after expiry: %q", msg)
	}
	b.screenshot("session-expired")
}
