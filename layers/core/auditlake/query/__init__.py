"""Questions asked of the lake: the named queries (Athena SQL, DuckDB locally) and the summary."""
