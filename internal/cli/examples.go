package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// examples are the `--help` examples of the commands that do not set
// Example themselves, by command path without "arca ". Kept in one place so
// that they read as one consistent manual; TestEveryCommandHasAnExample
// fails when a command has none.
var examples = map[string]string{
	"version": `  arca version`,

	"vault serve": `  arca vault serve                                  # SQLite and a self-signed certificate under the data dir
  arca vault serve --listen 0.0.0.0:8443 --db postgres://arca@db/arca --tls-cert tls.crt --tls-key tls.key`,
	"vault init": `  arca vault init                       # prints the admin token once
  arca vault init --data-dir /var/lib/arca`,
	"vault create": `  arca vault create default --description "production clusters"`,
	"vault list": `  arca vault list
  arca vault list -o yaml`,
	"vault show":   `  arca vault show default -o json`,
	"vault delete": `  arca vault delete old-vault`,
	"vault sync":   `  arca vault sync --instance shop --repo azure://acct/backups --password-file pw.txt`,

	"token create": `  arca token create alice-laptop --principal user:alice --expires-in P90D
  arca token create ci                          # principal ci, the vault's default lifetime`,
	"token list":   `  arca token list -o json`,
	"token revoke": `  arca token revoke alice-laptop               # by name, or by the ID arca token list shows`,

	"policy create": `  arca policy create daily --schedule "0 2 * * *" --retain-default P7D
  arca policy create gold --schedule R/2026-01-01T00:00:00Z/PT4H --retain-default P7D \
    --retain-weekly P12W --retain-yearly P10Y:vault`,
	"policy list":   `  arca policy list --vault default -o table`,
	"policy show":   `  arca policy show daily -o yaml`,
	"policy delete": `  arca policy delete daily`,

	"instance create": `  arca instance create shop --cluster prod-aks --policy daily --storage azure://acct/backups/prod \
    --include-namespaces shop,payments --snapshot-location csi-azuredisk-vsc`,
	"instance update": `  arca instance update shop --policy gold
  arca instance update shop --config backup-config.yaml`,
	"instance list":   `  arca instance list -o json`,
	"instance show":   `  arca instance show shop -o yaml`,
	"instance stop":   `  arca instance stop shop --mode retain-per-policy`,
	"instance resume": `  arca instance resume shop`,
	"instance delete": `  arca instance delete shop
  arca instance delete shop --delete-data      # a stopped instance with its recovery points, in a job`,
	"instance validate": `  arca instance validate shop --kubeconfig prod.yaml --assign-missing-roles`,

	"backup now": `  arca backup now shop --wait                 # live progress on a terminal
  arca backup now shop --to vault --wait      # also move the volumes' data into the repository
  arca backup now shop --retention P30D -o json`,

	"recovery-point list": `  arca recovery-point list --instance shop
  arca rp list -o json`,
	"recovery-point show": `  arca recovery-point show rp-5a602a12c959 -o yaml`,
	"recovery-point contents": `  arca recovery-point contents rp-5a602a12c959                     # namespaces
  arca recovery-point contents rp-5a602a12c959 --namespace shop --type deployments.apps
  arca recovery-point contents rp-5a602a12c959 --namespace shop --type configmaps --name settings`,
	"recovery-point volumes": `  arca recovery-point volumes rp-5a602a12c959
  arca recovery-point volumes rp-5a602a12c959 -o json`,
	"recovery-point diff": `  arca recovery-point diff rp-5a602a12c959 --live --namespace shop
  arca recovery-point diff rp-5a602a12c959 --against rp-77e1c0d4a9b2 -o json`,
	"recovery-point files ls": `  arca recovery-point files ls --repo azure://acct/backups --recovery-point 5a602a12 --volume shop/data /var/lib
  arca recovery-point files ls --repo /backups --recovery-point latest -R -o json`,
	"recovery-point files cat": `  arca recovery-point files cat --repo /backups --recovery-point 5a602a12 --volume shop/data etc/app.conf > app.conf`,
	"recovery-point files restore": `  arca recovery-point files restore --recovery-point rp-5a602a12c959 --volume shop/data /www ./www-restored
  arca recovery-point files restore --repo /backups --recovery-point 5a602a12 --volume shop/data www ./www-restored`,

	"datamover backup": `  arca datamover backup --repo azure://acct/backups --source /data --volume shop/data \
    --tag arca.io/backup-job=arca-system/nightly --result-file /dev/termination-log`,
	"datamover restore": `  arca datamover restore --repo azure://acct/backups --recovery-point 5a602a12 --volume shop/data --target /data`,

	"restore start": `  arca restore start --recovery-point rp-5a602a12c959 --target-cluster prod-aks --wait
  arca restore start --recovery-point rp-5a602a12c959 --target-cluster dr-aks \
    --namespace-mapping shop=shop-restored --conflict skip --dry-run`,
	"restore validate": `  arca restore validate --recovery-point rp-5a602a12c959 --target-cluster dr-aks --kubeconfig dr.yaml`,

	"job list":   `  arca job list --instance shop --state Failed --limit 20`,
	"job show":   `  arca job show 5a602a12c959132b0339b4ed -o yaml`,
	"job watch":  `  arca job watch 5a602a12c959132b0339b4ed`,
	"job cancel": `  arca job cancel 5a602a12c959132b0339b4ed`,

	"extension install": `  ARCA_PASSWORD=… arca extension install --kubeconfig kind.yaml --storage file:///var/backups/arca
  arca extension install --kubeconfig aks.yaml --storage azure://acct/backups/prod \
    --azure-account-key "$KEY" --password-file repo.pass --image myregistry.azurecr.io/arca:v0.1.0`,
	"extension update":    `  arca extension update --kubeconfig aks.yaml --memory-limit 1Gi --max-concurrent-jobs 2`,
	"extension show":      `  arca extension show --kubeconfig aks.yaml -o json`,
	"extension uninstall": `  arca extension uninstall --kubeconfig aks.yaml`,
	"extension manifests": `  arca extension manifests --storage s3://bucket/arca?endpoint=minio:9000 > arca.yaml   # for GitOps`,
	"extension run": `  arca extension run --kubeconfig kind.yaml --install-crds   # out of the cluster, for development
  arca extension run --in-cluster                            # what the Deployment runs`,

	"trusted-access enable":  `  arca trusted-access enable --kubeconfig aks.yaml --vault default --cluster-name prod-aks`,
	"trusted-access list":    `  arca trusted-access list --kubeconfig aks.yaml`,
	"trusted-access disable": `  arca trusted-access disable --kubeconfig aks.yaml --vault default --cluster-name prod-aks --unregister`,

	"role assign": `  arca role assign --principal user:alice --role "Backup Operator" --scope-vault default
  arca role assign --principal vault:default --role Reader --scope-cluster prod-aks
  arca role assign --principal extension:prod-aks --role "Storage Contributor" --scope-storage azure://acct/backups/prod`,
	"role list":        `  arca role list --principal user:alice -o yaml`,
	"role remove":      `  arca role remove 73b414d52138aad58cdf9590`,
	"role definitions": `  arca role definitions`,

	"local backup": `  ARCA_PASSWORD=… arca local backup --kubeconfig kind.yaml --repo file:///var/backups/arca --include-namespaces shop`,
	"local restore": `  arca local restore --kubeconfig kind.yaml --repo file:///var/backups/arca --recovery-point latest \
    --include-namespaces shop`,
	"local list":   `  arca local list --repo file:///var/backups/arca -o json`,
	"local diff":   `  arca local diff 1a2b3c 4d5e6f --repo file:///var/backups/arca`,
	"local forget": `  arca local forget 1a2b3c --repo file:///var/backups/arca --kubeconfig kind.yaml`,

	"repo init":          `  ARCA_PASSWORD=… arca repo init --repo s3://bucket/arca?endpoint=minio:9000`,
	"repo check":         `  arca repo check --repo file:///var/backups/arca --read-data`,
	"repo prune":         `  arca repo prune --repo file:///var/backups/arca`,
	"repo stats":         `  arca repo stats --repo file:///var/backups/arca -o json`,
	"repo forget":        `  arca repo forget 1a2b3c --repo file:///var/backups/arca`,
	"repo unlock":        `  arca repo unlock --repo file:///var/backups/arca`,
	"repo rebuild-index": `  arca repo rebuild-index --repo file:///var/backups/arca`,
	"repo key list":      `  arca repo key list --repo file:///var/backups/arca`,
	"repo key add":       `  arca repo key add --repo file:///var/backups/arca --new-password-file new.pass`,
	"repo key remove":    `  arca repo key remove 3f2a1b --repo file:///var/backups/arca`,
	"repo copy": `  ARCA_PASSWORD=… ARCA_TO_PASSWORD=… arca repo copy --from file:///var/backups/arca \
    --to 's3://arca-dr/shop?endpoint=s3.eu-west-1.amazonaws.com' --instance shop`,
}

// applyExamples sets the examples above on the commands that have none.
func applyExamples(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if ex, ok := examples[path]; ok && c.Example == "" {
			c.Example = ex
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}
