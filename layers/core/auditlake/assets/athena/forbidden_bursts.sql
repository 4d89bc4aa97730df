-- Identities denied (403) at least `threshold` times within one minute: when the threshold was
-- reached, the most denials in any minute, and all their denials in the range with source IPs,
-- resources and verbs. One row per identity; narrow since/until to separate episodes.
-- params: threshold=10
-- placeholders: since until since since until until since until cluster cluster threshold
WITH denied AS (
  SELECT cluster, user_name AS identity, request_received_at AS at, source_ips,
         coalesce(object_resource, request_uri) AS resource, verb
  FROM audit_live
  WHERE dt BETWEEN date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
               AND date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
    AND (dt > date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
         OR hour >= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC') AS integer))
    AND (dt < date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
         OR hour <= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC') AS integer))
    AND request_received_at >= CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
    AND request_received_at < CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
    AND (? = '' OR cluster = ?)
    AND response_code = 403 AND stage <> 'RequestReceived'
),
windows AS (
  SELECT cluster, identity, at,
         count(*) OVER (PARTITION BY cluster, identity ORDER BY at
                        RANGE BETWEEN INTERVAL '1' MINUTE PRECEDING AND CURRENT ROW) AS per_minute
  FROM denied
),
bursts AS (
  SELECT cluster, identity, min(at) AS threshold_reached_at, max(per_minute) AS max_per_minute
  FROM windows
  WHERE per_minute >= ?
  GROUP BY cluster, identity
)
SELECT b.cluster, b.identity, b.threshold_reached_at, b.max_per_minute, count(*) AS denied_in_range,
       min(d.at) AS first_denied, max(d.at) AS last_denied,
       array_distinct(flatten(array_agg(d.source_ips))) AS source_ips,
       array_distinct(array_agg(d.resource)) AS resources,
       array_distinct(array_agg(d.verb)) AS verbs
FROM bursts b
JOIN denied d ON d.cluster = b.cluster AND d.identity = b.identity
GROUP BY b.cluster, b.identity, b.threshold_reached_at, b.max_per_minute
ORDER BY b.threshold_reached_at, b.identity
