// Package browsertest holds no code: its test drives the vault's web
// dashboard (internal/vault/dashboard) in a real browser, Debian's
// Chromium through chromedp, against `arca vault serve`'s server and a
// cluster with a real node where `arca quickstart` installed the extension
// (docs/dashboard.md, Tests). It sits outside internal/vault because it
// sets up the cluster side too, which the vault's packages never import.
package browsertest
