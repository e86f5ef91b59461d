package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for the table sizes

	"github.com/arca-backup/arca/internal/testenv"
	"github.com/arca-backup/arca/internal/vault/clock"
	"github.com/arca-backup/arca/internal/vault/policy"
	"github.com/arca-backup/arca/internal/vault/rbac"
	"github.com/arca-backup/arca/internal/vault/retention"
	"github.com/arca-backup/arca/internal/vault/scheduler"
	"github.com/arca-backup/arca/internal/vault/server"
	"github.com/arca-backup/arca/internal/vault/store"
	"github.com/arca-backup/arca/internal/vault/store/postgres"
	"github.com/arca-backup/arca/internal/vault/store/sqlite"
	"github.com/arca-backup/arca/internal/vault/store/sqlstore"
)

// vaultScale is the size of BenchmarkVaultAtScale: the numbers
// unless ARCA_BENCH_VAULT_* say otherwise.
type vaultScale struct {
	Policies, Instances, Clusters, Days int
	ListSamples, ShowSamples            int
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func vaultScaleFromEnv(b *testing.B) vaultScale {
	return vaultScale{
		Policies:    envInt(b, "ARCA_BENCH_VAULT_POLICIES", 5000),
		Instances:   envInt(b, "ARCA_BENCH_VAULT_INSTANCES", 5000),
		Clusters:    envInt(b, "ARCA_BENCH_VAULT_CLUSTERS", 100),
		Days:        envInt(b, "ARCA_BENCH_VAULT_DAYS", 30),
		ListSamples: envInt(b, "ARCA_BENCH_VAULT_LIST_SAMPLES", 200),
		ShowSamples: envInt(b, "ARCA_BENCH_VAULT_SHOW_SAMPLES", 1000),
	}
}

// Goals of issue 13 item 9.
const (
	goalP99      = 50 * time.Millisecond
	goalClaim    = 10 * time.Second
	goalMemBytes = 200 << 20
)

// BenchmarkVaultAtScale fills one vault with ARCA_BENCH_VAULT_POLICIES
// policies and ARCA_BENCH_VAULT_INSTANCES backup instances spread over
// ARCA_BENCH_VAULT_CLUSTERS clusters (5,000, 5,000 and 100 by default: the
// limits Azure Backup documents per vault), on SQLite and on PostgreSQL,
// and prints:
//   - p50/p99 latency of create, list and show of policies and instances
//     through the vault's HTTPS API, served by `arca vault serve`'s own Run
//     in a child process (this test binary re-executed), beside the same
//     reads made directly on the store (the floor the API adds to);
//   - the child's peak RSS (kernel rusage);
//   - the time the scheduler needs to claim every instance's due trigger,
//     then ARCA_BENCH_VAULT_DAYS simulated days of daily backups (each job
//     completed, its recovery point recorded with the policy's retention,
//     the retention pass run), with the job table's rows and size per day;
//   - the latency of listing one instance's jobs at the end of those days.
func BenchmarkVaultAtScale(b *testing.B) {
	sc := vaultScaleFromEnv(b)
	b.Run("sqlite", func(b *testing.B) {
		dir := b.TempDir()
		runVaultAtScale(b, sc, server.Options{DataDir: dir}, func() *sql.DB {
			db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "vault.db")+"?_pragma=busy_timeout(10000)")
			if err != nil {
				b.Fatal(err)
			}
			return db
		})
	})
	b.Run("postgres", func(b *testing.B) {
		pg := testenv.StartPostgres(b)
		dsn := pg.CreateDatabase(b, "arca_vault_bench")
		runVaultAtScale(b, sc, server.Options{DataDir: b.TempDir(), DB: dsn}, func() *sql.DB {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				b.Fatal(err)
			}
			return db
		})
	})
}

const benchVault = "scale"

func runVaultAtScale(b *testing.B, sc vaultScale, o server.Options, rawDB func() *sql.DB) {
	ctx := context.Background()
	o.Log = slog.New(slog.DiscardHandler)
	kind := "sqlite"
	if o.DB != "" {
		kind = "postgres"
	}
	ini, err := server.Init(ctx, o)
	if err != nil {
		b.Fatalf("vault init: %v", err)
	}
	child := startVaultChild(b, o)
	c := newAPIClient(b, child.addr, ini.CertFile, ini.Token)
	fmt.Printf("vault-at-scale %s: %d policies, %d instances over %d clusters in one vault; vault process %s\n",
		kind, sc.Policies, sc.Instances, sc.Clusters, child.addr)

	c.do("POST", "/api/v1/vaults", map[string]any{"name": benchVault}, 201)
	// Daily at an hour 12 hours away, so that the vault's own scheduler
	// claims nothing while the API is measured.
	slot := (time.Now().UTC().Hour() + 12) % 24
	schedule := fmt.Sprintf("R/2026-01-01T%02d:00:00Z/P1D", slot)
	retentionSpec := map[string]any{"default": map[string]any{"duration": "P7D"}, "weekly": map[string]any{"duration": "P4W"}}

	base := "/api/v1/vaults/" + benchVault
	var createPol, createIn []time.Duration
	for i := range sc.Policies {
		createPol = append(createPol, c.timed("POST", base+"/policies", map[string]any{
			"name": fmt.Sprintf("policy-%05d", i), "schedule": schedule, "retention": retentionSpec}, 201))
	}
	// The roles the vault enforces of the identities acting for it, per
	// cluster, as an installation would hold them.
	for i := range sc.Clusters {
		cl := fmt.Sprintf("cluster-%03d", i)
		c.do("POST", "/api/v1/role-assignments", map[string]any{"principal": rbac.VaultIdentity(benchVault), "role": rbac.Reader, "scope": rbac.ClusterScope(cl)}, 201)
		c.do("POST", "/api/v1/role-assignments", map[string]any{"principal": rbac.ExtensionIdentity(cl), "role": rbac.StorageContributor,
			"scope": rbac.StorageScope("file:///srv/arca/" + cl)}, 201)
	}
	for i := range sc.Instances {
		createIn = append(createIn, c.timed("POST", base+"/instances?skipValidation=true", map[string]any{
			"name": fmt.Sprintf("instance-%05d", i), "cluster": fmt.Sprintf("cluster-%03d", i%sc.Clusters),
			"policy": fmt.Sprintf("policy-%05d", i%sc.Policies), "storageLocation": fmt.Sprintf("file:///srv/arca/cluster-%03d", i%sc.Clusters),
			"backupConfiguration": map[string]any{"includedNamespaces": []string{"shop", "payments"}}}, 201))
	}

	// The same reads on the store, beside the API: open a second handle
	// on the same database while the vault process runs.
	st := openStore(b, o)
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(n int, prefix string) string { return fmt.Sprintf("%s-%05d", prefix, rng.IntN(n)) }

	type row struct {
		op       string
		api, sto []time.Duration
		bytes    int
	}
	var rows []row
	rows = append(rows, row{op: "create policy", api: createPol}, row{op: "create instance", api: createIn})
	listPol, nPol := c.sampleList(base+"/policies", sc.ListSamples, sc.Policies)
	rows = append(rows, row{op: "list policies, whole", api: listPol, bytes: nPol, sto: sample(sc.ListSamples, func() {
		ps, err := st.ListPolicies(ctx, benchVault)
		if err != nil || len(ps) != sc.Policies {
			b.Fatalf("store list policies: %d, %v", len(ps), err)
		}
	})})
	listIn, nIn := c.sampleList(base+"/instances", sc.ListSamples, sc.Instances)
	rows = append(rows, row{op: "list instances, whole", api: listIn, bytes: nIn, sto: sample(sc.ListSamples, func() {
		ins, err := st.ListInstances(ctx, benchVault, "")
		if err != nil || len(ins) != sc.Instances {
			b.Fatalf("store list instances: %d, %v", len(ins), err)
		}
	})})
	// Pages, from a random name on: what a client that pages reads.
	for _, size := range []int{100, 1000} {
		for _, l := range []struct{ what, prefix string }{{"policies", "policy"}, {"instances", "instance"}} {
			n := sc.Policies
			if l.what == "instances" {
				n = sc.Instances
			}
			var bytes int
			api := sample(sc.ListSamples, func() {
				data := c.do("GET", fmt.Sprintf("%s/%s?limit=%d&after=%s", base, l.what, size, pick(n, l.prefix)), nil, 200)
				bytes = max(bytes, len(data))
			})
			sto := sample(sc.ListSamples, func() {
				p := store.Page{After: pick(n, l.prefix), Limit: size}
				var err error
				if l.what == "policies" {
					_, err = st.ListPoliciesPage(ctx, benchVault, p)
				} else {
					_, err = st.ListInstancesPage(ctx, benchVault, "", p)
				}
				if err != nil {
					b.Fatal(err)
				}
			})
			rows = append(rows, row{op: fmt.Sprintf("list %s, page %d", l.what, size), api: api, sto: sto, bytes: bytes})
		}
	}
	rows = append(rows, row{op: "show policy", api: sample(sc.ShowSamples, func() {
		c.do("GET", base+"/policies/"+pick(sc.Policies, "policy"), nil, 200)
	}), sto: sample(sc.ShowSamples, func() {
		if _, err := st.GetPolicy(ctx, benchVault, pick(sc.Policies, "policy")); err != nil {
			b.Fatal(err)
		}
	})})
	rows = append(rows, row{op: "show instance", api: sample(sc.ShowSamples, func() {
		c.do("GET", base+"/instances/"+pick(sc.Instances, "instance"), nil, 200)
	}), sto: sample(sc.ShowSamples, func() {
		if _, err := st.GetInstance(ctx, benchVault, pick(sc.Instances, "instance")); err != nil {
			b.Fatal(err)
		}
	})})
	rss := child.stop(b)

	fmt.Printf("%-26s %10s %10s %12s %12s %12s  %s\n", "operation", "API p50", "API p99", "store p50", "store p99", "response", "goal")
	for _, r := range rows {
		goal := ""
		if strings.HasPrefix(r.op, "list") || strings.HasPrefix(r.op, "show") {
			goal = verdict(pct(r.api, 99) < goalP99, "p99 < 50 ms")
		}
		resp := ""
		if r.bytes > 0 {
			resp = fmt.Sprintf("%.0f KiB", float64(r.bytes)/(1<<10))
		}
		fmt.Printf("%-26s %10s %10s %12s %12s %12s  %s\n", r.op, ms(pct(r.api, 50)), ms(pct(r.api, 99)), ms(pct(r.sto, 50)), ms(pct(r.sto, 99)), resp, goal)
		b.ReportMetric(float64(pct(r.api, 99).Microseconds())/1000, strings.NewReplacer(" ", "-", ",", "").Replace(r.op)+"-p99-ms")
	}
	fmt.Printf("vault process peak RSS: %.1f MiB  %s\n", float64(rss)/(1<<20), verdict(rss < goalMemBytes, "< 200 MiB"))
	b.ReportMetric(float64(rss)/(1<<20), "vault-peak-MiB")

	simulateDays(b, sc, st, rawDB(), kind, ini.Token)
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
}

// simulateDays runs the scheduler on a fake clock from the triggers' first
// slot, one tick a day: every claimed job is completed and its recovery
// point recorded with the policy's retention (what the job runner does when
// a cluster reports success), then the retention pass runs (what the vault
// runs hourly). Nothing else touches the job table.
func simulateDays(b *testing.B, sc vaultScale, st *sqlstore.Store, db *sql.DB, kind, token string) {
	ctx := context.Background()
	defer db.Close()
	tr, err := st.GetTrigger(ctx, benchVault, "instance-00000")
	if err != nil {
		b.Fatal(err)
	}
	fc := clock.NewFake(tr.NextRun)
	sch := &scheduler.Scheduler{Store: st, Clock: fc}
	ret := &retention.Engine{Store: st, Clock: fc}
	pols := map[string]*policy.Policy{}
	ps, err := st.ListPolicies(ctx, benchVault)
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range ps {
		if pols[p.Name], err = policy.ParseJSON(p.Schedule, p.Retention); err != nil {
			b.Fatal(err)
		}
	}
	policyOf := map[string]string{}
	ins, err := st.ListInstances(ctx, benchVault, "")
	if err != nil {
		b.Fatal(err)
	}
	for _, in := range ins {
		policyOf[in.Name] = in.Policy
	}

	fmt.Printf("%-4s %12s %10s %10s %12s %12s %10s\n", "day", "claim", "jobs", "job rows", "jobs table", "database", "points")
	var claims []time.Duration
	for day := 1; day <= sc.Days; day++ {
		start := time.Now()
		jobs, err := sch.Tick(ctx)
		claim := time.Since(start)
		if err != nil {
			b.Fatalf("day %d: scheduler: %v", day, err)
		}
		if len(jobs) != sc.Instances {
			b.Fatalf("day %d: the scheduler claimed %d triggers, want %d", day, len(jobs), sc.Instances)
		}
		claims = append(claims, claim)
		parallel(b, jobs, 4, func(j *store.Job) error {
			now := fc.Now()
			end := now.Add(3 * time.Minute)
			j.State, j.StartedAt, j.EndedAt = store.JobCompleted, &now, &end
			j.ExternalRef = "arca-system/backupjob-" + j.ID
			j.SubTasks = []store.SubTask{{Name: "Backup", State: store.JobCompleted}}
			j.Progress = &store.JobProgress{ItemsDone: 412, ItemsTotal: 412, BytesDone: 3 << 20, Counts: map[string]int64{"configmaps": 200, "secrets": 150, "deployments": 40, "services": 22}}
			if err := st.UpdateJob(ctx, j); err != nil {
				return err
			}
			rp := &store.RecoveryPoint{Vault: j.Vault, Instance: j.Instance, JobID: j.ID, Time: *j.TriggerTime, RepoID: "r" + j.ID, Items: 412, Bytes: 3 << 20}
			if err := ret.Apply(ctx, pols[policyOf[j.Instance]], rp); err != nil {
				return err
			}
			return st.CreateRecoveryPoint(ctx, rp)
		})
		if _, err := ret.Run(ctx); err != nil {
			b.Fatalf("day %d: retention: %v", day, err)
		}
		jobRows, jobBytes, dbBytes, points := tableFigures(b, db, kind)
		fmt.Printf("%-4d %12s %10d %10d %12s %12s %10d\n", day, claim.Round(time.Millisecond), len(jobs), jobRows, mib(jobBytes), mib(dbBytes), points)
		fc.Advance(24 * time.Hour)
	}
	worst := slices.Max(claims)
	fmt.Printf("scheduler: %d due triggers claimed in %s (first day), worst day %s  %s\n", sc.Instances, claims[0].Round(time.Millisecond),
		worst.Round(time.Millisecond), verdict(worst < goalClaim, "< 10 s"))
	b.ReportMetric(claims[0].Seconds(), "claim-s")

	// What a user sees of that history: the newest jobs of one instance,
	// as `arca job list --instance` asks for them, and of the vault.
	one := sample(sc.ShowSamples/5, func() {
		js, err := st.ListJobs(ctx, store.JobFilter{Vault: benchVault, Instance: fmt.Sprintf("instance-%05d", rand.IntN(sc.Instances)), Limit: 20})
		if err != nil || len(js) == 0 {
			b.Fatalf("list jobs of an instance: %d, %v", len(js), err)
		}
	})
	all := sample(sc.ListSamples/5, func() {
		if _, err := st.ListJobs(ctx, store.JobFilter{Vault: benchVault, Limit: 1000}); err != nil {
			b.Fatal(err)
		}
	})
	fmt.Printf("after %d days, store: list 20 jobs of an instance p50 %s p99 %s; list the vault's newest 1000 jobs p50 %s p99 %s\n",
		sc.Days, ms(pct(one, 50)), ms(pct(one, 99)), ms(pct(all, 50)), ms(pct(all, 99)))

	// The same through the API: the vault's server in this process, on
	// a loopback port, over the same store.
	c := startInProcessVault(b, st, token)
	base := "/api/v1/vaults/" + benchVault + "/jobs"
	oneAPI := sample(sc.ShowSamples/5, func() {
		c.do("GET", fmt.Sprintf("%s?instance=instance-%05d&limit=20", base, rand.IntN(sc.Instances)), nil, 200)
	})
	allAPI := sample(sc.ListSamples/5, func() { c.do("GET", base, nil, 200) })
	fmt.Printf("after %d days, API: list 20 jobs of an instance p50 %s p99 %s; list jobs (default limit 1000) p50 %s p99 %s\n",
		sc.Days, ms(pct(oneAPI, 50)), ms(pct(oneAPI, 99)), ms(pct(allAPI, 50)), ms(pct(allAPI, 99)))
	b.ReportMetric(float64(pct(oneAPI, 99).Microseconds())/1000, "instance-jobs-api-p99-ms")
	b.ReportMetric(float64(pct(one, 99).Microseconds())/1000, "instance-jobs-p99-ms")
}

func tableFigures(b *testing.B, db *sql.DB, kind string) (jobRows, jobBytes, dbBytes, points int64) {
	ctx := context.Background()
	q := func(query string, into *int64) {
		if err := db.QueryRowContext(ctx, query).Scan(into); err != nil {
			b.Fatalf("%s: %v", query, err)
		}
	}
	q(`SELECT COUNT(*) FROM jobs`, &jobRows)
	q(`SELECT COUNT(*) FROM recovery_points`, &points)
	if kind == "postgres" {
		q(`SELECT pg_total_relation_size('jobs')`, &jobBytes)
		q(`SELECT pg_database_size(current_database())`, &dbBytes)
		return
	}
	// Pages of the table and of its indexes (dbstat), and of the file.
	q(`SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name = 'jobs')`, &jobBytes)
	q(`SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()`, &dbBytes)
	return
}

// parallel runs fn over items with n workers and fails on the first error.
func parallel[T any](b *testing.B, items []T, n int, fn func(T) error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	ch := make(chan T)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := fn(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, it := range items {
		ch <- it
	}
	close(ch)
	wg.Wait()
	if first != nil {
		b.Fatal(first)
	}
}

func openStore(b *testing.B, o server.Options) *sqlstore.Store {
	ctx := context.Background()
	var st *sqlstore.Store
	var err error
	if o.DB != "" {
		st, err = postgres.Open(ctx, o.DB, nil)
	} else {
		st, err = sqlite.Open(ctx, filepath.Join(o.DataDir, "vault.db"), nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	return st
}

func sample(n int, fn func()) []time.Duration {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		fn()
		out = append(out, time.Since(start))
	}
	return out
}

// pct is the p-th percentile (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func verdict(ok bool, goal string) string {
	if ok {
		return "goal " + goal + ": met"
	}
	return "goal " + goal + ": MISSED"
}

// apiClient speaks to the vault over HTTPS with its certificate and token.
type apiClient struct {
	b     *testing.B
	base  string
	token string
	http  *http.Client
}

func newAPIClient(b *testing.B, addr, certFile, token string) *apiClient {
	pem, err := os.ReadFile(certFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		b.Fatalf("no certificate in %s", certFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, MaxIdleConnsPerHost: 4}
	return &apiClient{b: b, base: "https://" + addr, token: token, http: &http.Client{Transport: tr, Timeout: time.Minute}}
}

// do sends a request, checks the status and returns the body's size.
func (c *apiClient) do(method, path string, body any, want int) []byte {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			c.b.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.b.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.b.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != want {
		c.b.Fatalf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	return data
}

func (c *apiClient) timed(method, path string, body any, want int) time.Duration {
	start := time.Now()
	c.do(method, path, body, want)
	return time.Since(start)
}

// sampleList times n GETs of a list, checks it holds want items and returns
// the response size.
func (c *apiClient) sampleList(path string, n, want int) ([]time.Duration, int) {
	var size int
	d := sample(n, func() {
		data := c.do("GET", path, nil, 200)
		size = len(data)
		var l struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(data, &l); err != nil {
			c.b.Fatalf("GET %s: %v", path, err)
		}
		if len(l.Items) != want {
			c.b.Fatalf("GET %s: %d items, want %d", path, len(l.Items), want)
		}
	})
	return d, size
}

// startInProcessVault serves the vault's API over st in this process on a
// loopback port (plain HTTP: the TLS cost is in the child's figures).
func startInProcessVault(b *testing.B, st store.Store, token string) *apiClient {
	s, _ := server.New(st, server.Options{Log: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	b.Cleanup(func() { srv.Close() })
	return &apiClient{b: b, base: "http://" + ln.Addr().String(), token: token, http: &http.Client{Timeout: time.Minute}}
}

// vaultChild is the vault running in a child process.
type vaultChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// TestVaultChildProcess is the vault process of BenchmarkVaultAtScale: the
// test binary re-executed runs server.Run (what `arca vault serve` runs)
// until its stdin closes. Skipped unless the benchmark starts it.
func TestVaultChildProcess(t *testing.T) {
	dir := os.Getenv("ARCA_BENCH_VAULT_DIR")
	if dir == "" {
		t.Skip("the vault process of BenchmarkVaultAtScale; started by it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin) //nolint:errcheck // EOF or error: stop either way
		cancel()
	}()
	err := server.Run(ctx, server.Options{Listen: "127.0.0.1:0", DataDir: dir, DB: os.Getenv("ARCA_BENCH_VAULT_DB"),
		Log: slog.New(slog.DiscardHandler), Ready: func(addr string) { fmt.Printf("vault-addr=%s\n", addr) }})
	if err != nil {
		t.Fatal(err)
	}
}

func startVaultChild(b *testing.B, o server.Options) *vaultChild {
	cmd := exec.Command(os.Args[0], "-test.run=^TestVaultChildProcess$")
	cmd.Env = append(os.Environ(), "ARCA_BENCH_VAULT_DIR="+o.DataDir, "ARCA_BENCH_VAULT_DB="+o.DB)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &vaultChild{cmd: cmd, stdin: stdin}
	b.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "vault-addr="); ok {
				addr <- a
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			b.Fatal("the vault process ended before listening (its stderr is above)")
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			b.Fatalf("vault address %q: %v", a, err)
		}
		c.addr = a
	case <-time.After(time.Minute):
		b.Fatal("the vault process did not listen within a minute")
	}
	return c
}

// stop ends the vault process and returns its peak RSS in bytes.
func (c *vaultChild) stop(b *testing.B) int64 {
	c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		b.Fatalf("vault process: %v", err)
	}
	return c.cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024 // kilobytes on Linux
}
