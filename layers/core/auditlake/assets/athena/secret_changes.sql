-- Every create, update, patch and delete of secrets, allowed or denied: who, from where, with what
-- result. name and namespace narrow it to one secret or one namespace (empty: all). A
-- deletecollection of secrets in the namespace may have removed the secret too and is listed.
-- params: name=, namespace=
-- placeholders: since until since since until until since until cluster cluster namespace namespace name name
SELECT request_received_at AS at, cluster, verb, user_name AS identity, impersonated_user_name AS impersonating,
       object_namespace AS namespace, object_name AS secret,
       array_join(source_ips, ', ') AS source_ips, user_agent, response_code, authz_decision, response_reason, audit_id
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
  AND object_resource = 'secrets' AND coalesce(object_api_group, '') = '' AND object_subresource IS NULL
  AND (? = '' OR object_namespace = ?)
  AND ((verb IN ('create', 'update', 'patch', 'delete') AND (? = '' OR object_name = ?))
       OR (verb = 'deletecollection' AND object_name IS NULL))
  AND stage IN ('ResponseComplete', 'Panic')
ORDER BY at, audit_id
