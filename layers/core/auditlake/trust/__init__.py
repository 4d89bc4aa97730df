"""What makes the record trustworthy: the ledger, the signed digest chain and verify, retention, alerts, liveness."""
