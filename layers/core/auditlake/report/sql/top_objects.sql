-- The `top` objects by changes (create, update, patch, delete, any subresource; namespace '' for
-- cluster-scoped objects), each change once: the objects whose history the report draws.
-- params: top=10
-- placeholders: since until since since until until since until cluster cluster top
WITH counted AS (
  SELECT object_resource AS resource, coalesce(object_namespace, '') AS namespace, object_name AS name,
         count(DISTINCT audit_id) AS changes, count(DISTINCT user_name) AS identities,
         min(request_received_at) AS first_seen, max(request_received_at) AS last_seen
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
    AND verb IN ('create', 'update', 'patch', 'delete') AND stage = 'ResponseComplete'
    AND object_resource IS NOT NULL AND object_name IS NOT NULL
  GROUP BY 1, 2, 3
),
ranked AS (
  SELECT *, row_number() OVER (ORDER BY changes DESC, resource, namespace, name) AS place
  FROM counted
)
SELECT place, resource, namespace, name, changes, identities, first_seen, last_seen
FROM ranked
WHERE place <= ?
ORDER BY place
