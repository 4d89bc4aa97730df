"""Detections: Sigma rules, compiled once, evaluated on every event before policy and redaction."""
