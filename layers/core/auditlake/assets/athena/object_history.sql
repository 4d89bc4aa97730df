-- Every change to one object (create, update, patch, delete, any subresource), exec, attach and
-- port-forward into it (logged at ResponseStarted while the session is open), one row per request
-- (its last stage), with the Events about it. namespace '' for cluster-scoped objects. Events are
-- matched by the resource of their object's kind (NetworkPolicy ~ networkpolicies, Endpoints ~
-- endpoints; other kinds as Kubernetes guesses: lower case plus s, es or ies). who of an Event:
-- its reporting controller, or for a core/v1 Event its source component (kubelet, ...).
-- params: resource, namespace, name
-- placeholders: since until since since until until since until cluster cluster resource namespace name since until since since until until since until cluster cluster name namespace resource
WITH requests AS (
  SELECT *, row_number() OVER (PARTITION BY cluster, audit_id ORDER BY stage_at DESC) AS latest
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
    AND (verb IN ('create', 'update', 'patch', 'delete')
         OR object_subresource IN ('exec', 'attach', 'portforward'))
    AND stage <> 'RequestReceived'
)
SELECT request_received_at AS at, cluster, 'audit' AS source,
       verb || coalesce(' ' || object_subresource, '') AS what, user_name AS who, response_code AS code,
       audit_id AS ref
FROM requests
WHERE latest = 1
UNION ALL
SELECT event_time AS at, cluster, 'event' AS source, reason || ': ' || coalesce(note, '') AS what,
       coalesce(nullif(reporting_controller, ''), json_extract_scalar(extra, '$.source.component')) AS who,
       NULL AS code, uid AS ref
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
  AND CASE regarding_kind
        -- the built-in kinds (kubectl api-resources), irregular plurals included
        WHEN 'Binding' THEN 'bindings' WHEN 'ComponentStatus' THEN 'componentstatuses'
        WHEN 'ConfigMap' THEN 'configmaps' WHEN 'Endpoints' THEN 'endpoints' WHEN 'Event' THEN 'events'
        WHEN 'LimitRange' THEN 'limitranges' WHEN 'Namespace' THEN 'namespaces' WHEN 'Node' THEN 'nodes'
        WHEN 'PersistentVolumeClaim' THEN 'persistentvolumeclaims' WHEN 'PersistentVolume' THEN 'persistentvolumes'
        WHEN 'Pod' THEN 'pods' WHEN 'PodTemplate' THEN 'podtemplates'
        WHEN 'ReplicationController' THEN 'replicationcontrollers' WHEN 'ResourceQuota' THEN 'resourcequotas'
        WHEN 'Secret' THEN 'secrets' WHEN 'ServiceAccount' THEN 'serviceaccounts' WHEN 'Service' THEN 'services'
        WHEN 'MutatingWebhookConfiguration' THEN 'mutatingwebhookconfigurations'
        WHEN 'ValidatingWebhookConfiguration' THEN 'validatingwebhookconfigurations'
        WHEN 'ValidatingAdmissionPolicy' THEN 'validatingadmissionpolicies'
        WHEN 'CustomResourceDefinition' THEN 'customresourcedefinitions' WHEN 'APIService' THEN 'apiservices'
        WHEN 'ControllerRevision' THEN 'controllerrevisions' WHEN 'DaemonSet' THEN 'daemonsets'
        WHEN 'Deployment' THEN 'deployments' WHEN 'ReplicaSet' THEN 'replicasets'
        WHEN 'StatefulSet' THEN 'statefulsets' WHEN 'HorizontalPodAutoscaler' THEN 'horizontalpodautoscalers'
        WHEN 'CronJob' THEN 'cronjobs' WHEN 'Job' THEN 'jobs'
        WHEN 'CertificateSigningRequest' THEN 'certificatesigningrequests' WHEN 'Lease' THEN 'leases'
        WHEN 'EndpointSlice' THEN 'endpointslices' WHEN 'FlowSchema' THEN 'flowschemas'
        WHEN 'PriorityLevelConfiguration' THEN 'prioritylevelconfigurations'
        WHEN 'IngressClass' THEN 'ingressclasses' WHEN 'Ingress' THEN 'ingresses'
        WHEN 'NetworkPolicy' THEN 'networkpolicies' WHEN 'RuntimeClass' THEN 'runtimeclasses'
        WHEN 'PodDisruptionBudget' THEN 'poddisruptionbudgets'
        WHEN 'ClusterRoleBinding' THEN 'clusterrolebindings' WHEN 'ClusterRole' THEN 'clusterroles'
        WHEN 'RoleBinding' THEN 'rolebindings' WHEN 'Role' THEN 'roles' WHEN 'PriorityClass' THEN 'priorityclasses'
        WHEN 'CSIDriver' THEN 'csidrivers' WHEN 'CSINode' THEN 'csinodes'
        WHEN 'CSIStorageCapacity' THEN 'csistoragecapacities' WHEN 'StorageClass' THEN 'storageclasses'
        WHEN 'VolumeAttachment' THEN 'volumeattachments'
        -- other kinds (custom resources) as Kubernetes guesses (meta.UnsafeGuessKindToResource)
        ELSE CASE WHEN lower(regarding_kind) LIKE '%s' THEN lower(regarding_kind) || 'es'
                  WHEN lower(regarding_kind) LIKE '%y'
                    THEN substr(lower(regarding_kind), 1, length(regarding_kind) - 1) || 'ies'
                  ELSE lower(regarding_kind) || 's' END
      END = ?
ORDER BY at, ref
