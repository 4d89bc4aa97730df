"""Audit entry points (webhook, serve, EKS forwarder, backfill, file import), all landing through intake.land()."""
