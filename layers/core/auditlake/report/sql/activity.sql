-- Requests per cluster and time bucket (`bucket`: minute, hour or day), each request once (by its
-- audit ID, whatever stages were logged), and how many of them were denied (403).
-- params: bucket=hour
-- placeholders: bucket since until since since until until since until cluster cluster
SELECT date_trunc(?, request_received_at) AS bucket_start, cluster,
       count(DISTINCT audit_id) AS requests,
       count(DISTINCT CASE WHEN response_code = 403 THEN audit_id END) AS denied
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
GROUP BY 1, 2
ORDER BY 1, 2
