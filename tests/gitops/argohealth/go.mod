// gopher-lua at the version Argo CD pins (v1.1.1): the engine of its Lua health checks.
module appgw-sse/tests/gitops/argohealth

go 1.26.0

require github.com/yuin/gopher-lua v1.1.1
