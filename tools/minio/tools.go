//go:build tools

// Package tools pins the MinIO server the S3 tests run against. It is its own
// module so that MinIO's large dependency graph stays out of Arca's go.mod.
package tools

import _ "github.com/minio/minio"
