-- Requests refused: 403 (forbidden by authorization or admission) and 401 (not authenticated),
-- one row per request (its last stage), newest last. identity narrows it to one user (empty: all).
-- params: identity=
-- placeholders: since until since since until until since until cluster cluster identity identity
WITH requests AS (
  SELECT *, row_number() OVER (PARTITION BY cluster, audit_id ORDER BY stage_at DESC) AS latest
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
    AND (? = '' OR user_name = ?)
    AND stage <> 'RequestReceived'
)
SELECT request_received_at AS at, cluster, user_name AS identity, impersonated_user_name AS impersonating,
       verb, coalesce(object_resource || coalesce('/' || object_subresource, ''), request_uri) AS resource,
       object_namespace AS namespace, object_name AS name, response_code,
       coalesce(nullif(authz_reason, ''), nullif(response_message, ''), response_reason) AS reason,
       array_join(source_ips, ', ') AS source_ips, user_agent, audit_id
FROM requests
WHERE latest = 1 AND response_code IN (401, 403)
ORDER BY at, audit_id
