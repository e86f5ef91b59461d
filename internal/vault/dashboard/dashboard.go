// Package dashboard is the vault's web dashboard: static HTML, CSS and
// JavaScript modules embedded in the binary (no build step, nothing loaded
// from another origin), served by `arca vault serve` at `/`. The pages call
// only the vault's public API on the same origin, authenticated by the
// session cookie that POST /api/v1/session sets (package server).
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/arca-backup/arca/docs"
)

//go:embed static
var static embed.FS

// ContentSecurityPolicy allows only this origin's scripts, styles and
// requests, and no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Paths the dashboard serves (the server mounts them next to the API).
const (
	IndexPath  = "/{$}"
	AssetsPath = "/ui/"
	GuidePath  = "/ui/user-guide.md"
)

// Handler serves the dashboard: the page at /, its assets under /ui/ and
// the user guide (for the codes' causes and fixes) at /ui/user-guide.md.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		name := "index.html"
		switch {
		case r.URL.Path == GuidePath:
			h.Set("Content-Type", "text/markdown; charset=utf-8")
			_, _ = w.Write(docs.UserGuide)
			return
		case strings.HasPrefix(r.URL.Path, AssetsPath):
			name = path.Clean(strings.TrimPrefix(r.URL.Path, AssetsPath))
		}
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		switch path.Ext(name) {
		case ".html":
			h.Set("Content-Type", "text/html; charset=utf-8")
		case ".js":
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		case ".css":
			h.Set("Content-Type", "text/css; charset=utf-8")
		case ".svg":
			h.Set("Content-Type", "image/svg+xml")
		}
		_, _ = w.Write(b)
	})
}
