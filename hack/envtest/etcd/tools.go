//go:build tools

// Package etcd pins the etcd server command in go.mod; it is built, never imported.
package etcd

import _ "go.etcd.io/etcd/server/v3"
