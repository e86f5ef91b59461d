// Package docs holds the project's documentation; UserGuide embeds the user
// guide so that the vault's dashboard can show a code's entry (cause and
// fix) without a network.
package docs

import _ "embed"

// UserGuide is docs/user-guide.md.
//
//go:embed user-guide.md
var UserGuide []byte
