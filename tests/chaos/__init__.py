"""Faults on purpose: AWS-boundary fault injection and the model that proves the pipeline under it."""
