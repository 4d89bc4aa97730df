-- Privilege grants: bindings to cluster-admin, roles created or changed with wildcard verbs,
-- resources or API groups, and bindings to such roles (when the role was changed in the range).
-- Needs request bodies of RBAC writes (the recommended policy logs them).
-- params:
-- placeholders: since until since since until until since until cluster cluster
WITH writes AS (
  SELECT request_received_at AS at, cluster, verb, user_name AS identity, object_resource AS resource,
         object_namespace AS namespace, object_name AS name, response_code, audit_id, request_object,
         json_extract_scalar(request_object, '$.roleRef.name') AS role_ref,
         regexp_like(coalesce(request_object, ''), '"(verbs|resources|apiGroups)"\s*:\s*\[[^\]]*"\*"') AS wildcard
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
    AND object_api_group = 'rbac.authorization.k8s.io'
    AND object_resource IN ('roles', 'clusterroles', 'rolebindings', 'clusterrolebindings')
    AND verb IN ('create', 'update', 'patch') AND stage = 'ResponseComplete'
),
wildcard_roles AS (
  SELECT DISTINCT cluster, name FROM writes WHERE resource IN ('roles', 'clusterroles') AND wildcard
)
SELECT w.at, w.cluster, w.verb, w.identity, w.resource, w.namespace, w.name, w.role_ref,
       CASE WHEN w.resource IN ('roles', 'clusterroles') THEN 'role with wildcards'
            WHEN w.role_ref = 'cluster-admin' THEN 'binds cluster-admin'
            ELSE 'binds a role with wildcards' END AS finding,
       w.response_code, w.audit_id
FROM writes w
WHERE (w.resource IN ('roles', 'clusterroles') AND w.wildcard)
   OR (w.resource IN ('rolebindings', 'clusterrolebindings')
       AND (w.role_ref = 'cluster-admin'
            OR EXISTS (SELECT 1 FROM wildcard_roles r WHERE r.cluster = w.cluster AND r.name = w.role_ref)))
ORDER BY w.at, w.audit_id
