-- Where the Events archive may be incomplete: periods the Events poller could not recover (its
-- checkpoint was older than the API server's event history, or a relist after 410 Gone could
-- show only the latest version of Events that changed meanwhile). No row: no known gap.
-- A gap is filed under the partition of its start, so partitions up to `until` are read.
-- params:
-- placeholders: until until since cluster cluster
SELECT cluster, first_timestamp AS gap_from, last_timestamp AS gap_to, note AS reason, observed_at AS recorded_at
FROM events
WHERE dt <= substr(?, 1, 10)
  AND api = 'auditlake/coverage-gap'
  AND first_timestamp < from_iso8601_timestamp(?) AND last_timestamp >= from_iso8601_timestamp(?)
  AND (? = '' OR cluster = ?)
ORDER BY gap_from, cluster
