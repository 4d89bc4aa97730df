-- Pods created privileged, with hostPath volumes, or in the host's network, PID or IPC namespace.
-- Only where the request body was logged (level Request or RequestResponse).
-- params:
-- placeholders: since until since since until until since until cluster cluster
WITH creations AS (
  SELECT request_received_at AS at, cluster, user_name AS identity, object_namespace AS namespace,
         coalesce(object_name, json_extract_scalar(request_object, '$.metadata.name'),
                  json_extract_scalar(request_object, '$.metadata.generateName') || '*') AS pod,
         response_code, audit_id,
         regexp_like(request_object, '"privileged"\s*:\s*true') AS privileged,
         regexp_like(request_object, '"hostPath"\s*:\s*\{') AS host_path,
         json_extract_scalar(request_object, '$.spec.hostNetwork') = 'true' AS host_network,
         json_extract_scalar(request_object, '$.spec.hostPID') = 'true' AS host_pid,
         json_extract_scalar(request_object, '$.spec.hostIPC') = 'true' AS host_ipc
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
    AND object_resource = 'pods' AND object_subresource IS NULL AND verb = 'create'
    AND stage = 'ResponseComplete' AND request_object IS NOT NULL
)
SELECT at, cluster, identity, namespace, pod, privileged, host_path,
       coalesce(host_network, false) AS host_network, coalesce(host_pid, false) AS host_pid,
       coalesce(host_ipc, false) AS host_ipc, response_code, audit_id
FROM creations
WHERE privileged OR host_path OR host_network OR host_pid OR host_ipc
ORDER BY at, audit_id
