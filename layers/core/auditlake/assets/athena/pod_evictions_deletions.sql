-- Who evicted or deleted which pod (and deletecollections of pods), with the result.
-- params:
-- placeholders: since until since since until until since until cluster cluster
SELECT request_received_at AS at, cluster,
       CASE WHEN object_subresource = 'eviction' THEN 'evict' ELSE verb END AS action,
       user_name AS identity, impersonated_user_name AS impersonating, object_namespace AS namespace,
       object_name AS pod, response_code, array_join(source_ips, ', ') AS source_ips, user_agent, audit_id
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
  AND object_resource = 'pods' AND stage = 'ResponseComplete'
  AND ((verb = 'create' AND object_subresource = 'eviction')
       OR (verb IN ('delete', 'deletecollection') AND object_subresource IS NULL))
ORDER BY at, audit_id
