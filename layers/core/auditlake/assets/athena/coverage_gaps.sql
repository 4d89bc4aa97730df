-- Where the Events archive may be incomplete: periods the Events poller could not recover (its
-- checkpoint was older than the API server's event history, or a relist after 410 Gone could
-- show only the latest version of Events that changed meanwhile). No row: no known gap.
-- A gap is filed under the hour it started, which can be long before `since`: a poller that was
-- down for weeks records one gap when it is back, starting at its last checkpoint. Gaps that
-- started up to `lookback_days` before `since` are found (default 90, EventsRetentionDays' default:
-- on Athena the events table projects no older partition than EventsRetentionDays anyway).
-- params: lookback_days=90
-- placeholders: since lookback_days until since lookback_days since lookback_days until until since lookback_days until since cluster cluster
SELECT cluster, first_timestamp AS gap_from, last_timestamp AS gap_to, note AS reason, observed_at AS recorded_at
FROM events_live
WHERE dt BETWEEN date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' - INTERVAL '1' DAY * ?, '%Y-%m-%d')
             AND date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
  AND (dt > date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' - INTERVAL '1' DAY * ?, '%Y-%m-%d')
       OR hour >= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' - INTERVAL '1' DAY * ?) AS integer))
  AND (dt < date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
       OR hour <= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC') AS integer))
  AND api = 'auditlake/coverage-gap'
  AND first_timestamp >= CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' - INTERVAL '1' DAY * ? AS timestamp)
  AND first_timestamp < CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
  AND last_timestamp >= CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
  AND (? = '' OR cluster = ?)
ORDER BY gap_from, cluster
