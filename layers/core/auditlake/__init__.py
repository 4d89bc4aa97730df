"""auditlake: a serverless flight recorder for Kubernetes audit events and Events."""

__version__ = "0.1.0"
