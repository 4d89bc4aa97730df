-- Requests made while impersonating another identity: who acted as whom, doing what, with what result.
-- params:
-- placeholders: since until since until cluster cluster
SELECT request_received_at AS at, cluster, user_name AS identity, impersonated_user_name AS acting_as,
       impersonated_user_groups AS acting_as_groups, verb,
       coalesce(object_resource || coalesce('/' || object_subresource, ''), request_uri) AS resource,
       object_namespace AS namespace, object_name AS name, response_code, audit_id
FROM audit
WHERE dt BETWEEN substr(?, 1, 10) AND substr(?, 1, 10)
  AND request_received_at >= from_iso8601_timestamp(?) AND request_received_at < from_iso8601_timestamp(?)
  AND (? = '' OR cluster = ?)
  AND impersonated_user_name IS NOT NULL AND stage IN ('ResponseComplete', 'Panic')
ORDER BY at, audit_id
