"""A local sandbox: the emulator, a Kubernetes API, the operator and an SSE backend."""
