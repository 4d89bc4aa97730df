-- Requests by system:anonymous or the system:unauthenticated group that were allowed, except the
-- health and version endpoints anonymous access exists for.
-- params:
-- placeholders: since until since since until until since until cluster cluster
SELECT request_received_at AS at, cluster, verb, request_uri, object_resource AS resource,
       object_namespace AS namespace, object_name AS name, response_code, authz_reason,
       array_join(source_ips, ', ') AS source_ips, user_agent, audit_id
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
  AND (user_name = 'system:anonymous' OR contains(coalesce(user_groups, ARRAY[]), 'system:unauthenticated'))
  AND stage = 'ResponseComplete'
  AND (authz_decision = 'allow' OR (authz_decision IS NULL AND response_code < 400))
  AND NOT regexp_like(coalesce(request_uri, ''), '^/(healthz|livez|readyz|version)([/?]|$)')
ORDER BY at, audit_id
