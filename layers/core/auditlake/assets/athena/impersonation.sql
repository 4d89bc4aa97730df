-- Requests made while impersonating another identity: who acted as whom, doing what, with what result.
-- params:
-- placeholders: since until since since until until since until cluster cluster
SELECT request_received_at AS at, cluster, user_name AS identity, impersonated_user_name AS acting_as,
       impersonated_user_groups AS acting_as_groups, verb,
       coalesce(object_resource || coalesce('/' || object_subresource, ''), request_uri) AS resource,
       object_namespace AS namespace, object_name AS name, response_code, audit_id
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
  AND impersonated_user_name IS NOT NULL AND stage IN ('ResponseComplete', 'Panic')
ORDER BY at, audit_id
