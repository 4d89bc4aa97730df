-- The `top` identities by requests (each request once), with their denials, clusters and first and last request.
-- params: top=10
-- placeholders: since until since since until until since until cluster cluster top
WITH counted AS (
  SELECT user_name AS identity, count(DISTINCT audit_id) AS requests,
         count(DISTINCT CASE WHEN response_code = 403 THEN audit_id END) AS denied,
         count(DISTINCT cluster) AS clusters,
         min(request_received_at) AS first_seen, max(request_received_at) AS last_seen
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
  GROUP BY 1
),
ranked AS (
  SELECT *, row_number() OVER (ORDER BY requests DESC, identity) AS place
  FROM counted
)
SELECT place, identity, requests, denied, clusters, first_seen, last_seen
FROM ranked
WHERE place <= ?
ORDER BY place
