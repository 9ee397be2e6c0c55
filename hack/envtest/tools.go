//go:build tools

// Package envtest pins the kube-apiserver command in go.mod; it is built, never imported.
package envtest

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
