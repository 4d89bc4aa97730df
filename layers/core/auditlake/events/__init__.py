"""Kubernetes Events: the poller, its API transport and credentials, leases, normalising, file import."""
