-- Everything an AWS IAM principal did in EKS clusters (aws-iam-authenticator or access entries):
-- matched on the role or user ARN, the assumed-role session ARN, the session name, the access key id
-- or the principal id that EKS puts in user.extra, or on the mapped user name. One row per request.
-- params: principal
-- placeholders: since until since since until until since until cluster cluster principal
WITH requests AS (
  SELECT *,
         json_extract_scalar(user_extra, '$.arn[0]') AS arn,
         json_extract_scalar(user_extra, '$.canonicalArn[0]') AS canonical_arn,
         json_extract_scalar(user_extra, '$.sessionName[0]') AS session_name,
         json_extract_scalar(user_extra, '$.accessKeyId[0]') AS access_key_id,
         json_extract_scalar(user_extra, '$.principalId[0]') AS principal_id,
         row_number() OVER (PARTITION BY cluster, audit_id ORDER BY stage_at DESC) AS latest
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
    AND user_extra IS NOT NULL
)
SELECT request_received_at AS at, cluster, user_name AS identity, canonical_arn AS iam_principal, session_name,
       access_key_id, verb, coalesce(object_resource || coalesce('/' || object_subresource, ''), request_uri) AS resource,
       object_namespace AS namespace, object_name AS name, response_code,
       array_join(source_ips, ', ') AS source_ips, user_agent, audit_id
FROM requests
WHERE latest = 1
  AND ? IN (arn, canonical_arn, session_name, access_key_id, principal_id, user_name)
ORDER BY at, audit_id
