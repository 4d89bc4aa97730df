-- Every change to one object (create, update, patch, delete, any subresource), with the Events
-- about it. namespace '' for cluster-scoped objects. Events are matched by kind (Pod ~ pods).
-- params: resource, namespace, name
-- placeholders: since until since since until until since until cluster cluster resource namespace name since until since since until until since until cluster cluster name namespace resource resource
SELECT request_received_at AS at, cluster, 'audit' AS source,
       verb || coalesce(' ' || object_subresource, '') AS what, user_name AS who, response_code AS code,
       audit_id AS ref
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
  AND object_resource = ? AND coalesce(object_namespace, '') = ? AND object_name = ?
  AND verb IN ('create', 'update', 'patch', 'delete') AND stage = 'ResponseComplete'
UNION ALL
SELECT event_time AS at, cluster, 'event' AS source, reason || ': ' || coalesce(note, '') AS what,
       reporting_controller AS who, NULL AS code, uid AS ref
FROM events_live
WHERE dt BETWEEN date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
             AND date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
  AND (dt > date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
       OR hour >= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC') AS integer))
  AND (dt < date_format(from_iso8601_timestamp(?) AT TIME ZONE 'UTC', '%Y-%m-%d')
       OR hour <= CAST(hour(from_iso8601_timestamp(?) AT TIME ZONE 'UTC') AS integer))
  AND event_time >= CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
  AND event_time < CAST(from_iso8601_timestamp(?) AT TIME ZONE 'UTC' AS timestamp)
  AND (? = '' OR cluster = ?)
  AND regarding_name = ? AND coalesce(regarding_namespace, '') = ?
  AND (lower(regarding_kind) || 's' = ? OR lower(regarding_kind) || 'es' = ?)
ORDER BY at, ref
