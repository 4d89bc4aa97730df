"""The audit.k8s.io transform, pure (no I/O): read a batch, apply the pipeline policy, redact, and
normalise to the column contract (model.py)."""
