-- Nodes joining and leaving: node objects created or deleted (audit), and node lifecycle Events
-- (registered, removed, ready, not ready) where the Events archive has them.
-- params:
-- placeholders: since until since since until until since until cluster cluster since until since since until until since until cluster cluster
SELECT request_received_at AS at, cluster, 'audit' AS source, object_name AS node,
       verb || CASE WHEN response_code >= 400 THEN ' (refused ' || CAST(response_code AS varchar) || ')' ELSE '' END
         AS what,
       user_name AS who
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
  AND object_resource = 'nodes' AND object_subresource IS NULL AND verb IN ('create', 'delete')
  AND stage = 'ResponseComplete'
UNION ALL
SELECT event_time AS at, cluster, 'event' AS source, regarding_name AS node, reason AS what,
       coalesce(nullif(reporting_controller, ''), json_extract_scalar(extra, '$.source.component')) AS who
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
  AND regarding_kind = 'Node'
  AND reason IN ('RegisteredNode', 'RemovingNode', 'DeletingNode', 'NodeReady', 'NodeNotReady', 'Rebooted')
ORDER BY at, node
