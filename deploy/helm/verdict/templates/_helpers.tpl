{{/* Names: <release>-verdict (or the release name when it already says verdict), cut so that
     StatefulSet pod names and their DNS labels stay within 63 characters. */}}
{{- define "verdict.fullname" -}}
{{- if contains "verdict" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-verdict" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "verdict.coordinator" -}}{{ include "verdict.fullname" . }}-coordinator{{- end -}}
{{- define "verdict.draft" -}}{{ include "verdict.fullname" . }}-draft{{- end -}}
{{- define "verdict.shard" -}}{{ include "verdict.fullname" . }}-shard{{- end -}}

{{/* The DNS suffix of Services in this namespace. */}}
{{- define "verdict.svcDomain" -}}{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}{{- end -}}

{{- define "verdict.labels" -}}
app.kubernetes.io/name: verdict
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one component (coordinator, draft, shard). */}}
{{- define "verdict.selector" -}}
app.kubernetes.io/name: verdict
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "verdict.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Pod annotations: a config checksum, so that pods roll when the cluster config changes. */}}
{{- define "verdict.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "verdict.adminScheme" -}}
{{- if .Values.security.clientTls.existingSecret }}HTTPS{{ else }}HTTP{{ end -}}
{{- end -}}

{{/* The three probes of a member, on its admin endpoint. */}}
{{- define "verdict.probes" -}}
{{- $scheme := include "verdict.adminScheme" . -}}
startupProbe:
  httpGet: {path: /healthz, port: admin, scheme: {{ $scheme }}}
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
readinessProbe:
  httpGet: {path: /readyz, port: admin, scheme: {{ $scheme }}}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
livenessProbe:
  httpGet: {path: /healthz, port: admin, scheme: {{ $scheme }}}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
{{- end -}}

{{/* Resources with the GPU count as a limit (and request) when gpus > 0. */}}
{{- define "verdict.resources" -}}
{{- $r := deepCopy (.resources | default dict) -}}
{{- if gt (int .gpus) 0 -}}
{{- $limits := deepCopy ($r.limits | default dict) -}}
{{- $_ := set $limits "nvidia.com/gpu" (int .gpus) -}}
{{- $_ := set $r "limits" $limits -}}
{{- end -}}
{{- toYaml $r -}}
{{- end -}}

{{/* Volumes every member mounts: the cluster config, the models, and the referenced Secrets. */}}
{{- define "verdict.volumes" -}}
- name: config
  configMap:
    name: {{ include "verdict.fullname" . }}-config
- name: tmp  # the root file system is read-only
  emptyDir: {}
- name: models
  {{- if .Values.models.volume.persistentVolumeClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.models.volume.persistentVolumeClaim }}
    readOnly: true
  {{- else }}
  hostPath:
    path: {{ .Values.models.volume.hostPath }}
    type: Directory
  {{- end }}
{{- with .Values.security }}
{{- if .apiKeys.existingSecret }}
- name: api-keys
  secret: {secretName: {{ .apiKeys.existingSecret }}, items: [{key: {{ .apiKeys.key }}, path: api-keys}]}
{{- end }}
{{- if .adminTokens.existingSecret }}
- name: admin-tokens
  secret: {secretName: {{ .adminTokens.existingSecret }}, items: [{key: {{ .adminTokens.key }}, path: admin-tokens}]}
{{- end }}
{{- if .clientTls.existingSecret }}
- name: client-tls
  secret: {secretName: {{ .clientTls.existingSecret }}}
{{- end }}
{{- if .memberTls.existingSecret }}
- name: member-tls
  secret: {secretName: {{ .memberTls.existingSecret }}}
{{- end }}
{{- end }}
{{- end -}}

{{- define "verdict.volumeMounts" -}}
- {name: config, mountPath: /etc/verdict, readOnly: true}
- {name: tmp, mountPath: /tmp}
- {name: models, mountPath: {{ .Values.models.volume.mountPath }}, readOnly: true}
{{- with .Values.security }}
{{- if .apiKeys.existingSecret }}
- {name: api-keys, mountPath: /etc/verdict-secrets/api-keys, readOnly: true}
{{- end }}
{{- if .adminTokens.existingSecret }}
- {name: admin-tokens, mountPath: /etc/verdict-secrets/admin-tokens, readOnly: true}
{{- end }}
{{- if .clientTls.existingSecret }}
- {name: client-tls, mountPath: /etc/verdict-secrets/client-tls, readOnly: true}
{{- end }}
{{- if .memberTls.existingSecret }}
- {name: member-tls, mountPath: /etc/verdict-secrets/member-tls, readOnly: true}
{{- end }}
{{- end }}
{{- end -}}

{{/* The container ports of a member. */}}
{{- define "verdict.ports" -}}
- {name: grpc, containerPort: {{ .root.Values.ports.grpc }}, protocol: TCP}
- {name: admin, containerPort: {{ .root.Values.ports.admin }}, protocol: TCP}
{{- if eq .component "shard" }}
- {name: data, containerPort: {{ .root.Values.ports.data }}, protocol: TCP}
{{- end }}
{{- if and (eq .component "coordinator") .root.Values.coordinator.httpApi }}
- {name: http, containerPort: {{ .root.Values.ports.http }}, protocol: TCP}
{{- end }}
{{- end -}}

{{- define "verdict.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "verdict.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
