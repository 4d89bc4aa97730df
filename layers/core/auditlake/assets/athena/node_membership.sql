-- Nodes joining and leaving: node objects created or deleted (audit), and node lifecycle Events
-- (registered, removed, ready, not ready) where the Events archive has them.
-- params:
-- placeholders: since until since until cluster cluster since until since until cluster cluster
SELECT request_received_at AS at, cluster, 'audit' AS source, object_name AS node,
       verb || CASE WHEN response_code >= 400 THEN ' (refused ' || CAST(response_code AS varchar) || ')' ELSE '' END
         AS what,
       user_name AS who
FROM audit
WHERE dt BETWEEN substr(?, 1, 10) AND substr(?, 1, 10)
  AND request_received_at >= from_iso8601_timestamp(?) AND request_received_at < from_iso8601_timestamp(?)
  AND (? = '' OR cluster = ?)
  AND object_resource = 'nodes' AND object_subresource IS NULL AND verb IN ('create', 'delete')
  AND stage = 'ResponseComplete'
UNION ALL
SELECT event_time AS at, cluster, 'event' AS source, regarding_name AS node, reason AS what,
       reporting_controller AS who
FROM events
WHERE dt BETWEEN substr(?, 1, 10) AND substr(?, 1, 10)
  AND event_time >= from_iso8601_timestamp(?) AND event_time < from_iso8601_timestamp(?)
  AND (? = '' OR cluster = ?)
  AND regarding_kind = 'Node'
  AND reason IN ('RegisteredNode', 'RemovingNode', 'DeletingNode', 'NodeReady', 'NodeNotReady', 'Rebooted')
ORDER BY at, node
