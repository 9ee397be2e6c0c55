"""Adapters: the Azure gateway port (azure-mgmt-network) and Kubernetes access."""
