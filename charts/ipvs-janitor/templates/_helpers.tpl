{{/*
Chart name, truncated to 63 characters (the label value limit).
*/}}
{{- define "ipvs-janitor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart name>, or the release name if it already contains the chart name.
*/}}
{{- define "ipvs-janitor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
helm.sh/chart label value.
*/}}
{{- define "ipvs-janitor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a DaemonSet selector is immutable).
Call with (dict "ctx" $ "component" "agent").
*/}}
{{- define "ipvs-janitor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ipvs-janitor.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component | default "agent" }}
{{- end }}

{{/*
Standard labels for every object, plus commonLabels.
Call with (dict "ctx" $ "component" "agent").
*/}}
{{- define "ipvs-janitor.labels" -}}
helm.sh/chart: {{ include "ipvs-janitor.chart" .ctx }}
{{ include "ipvs-janitor.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Annotations for an object's metadata: commonAnnotations merged with object-specific ones (these win).
Call with (dict "ctx" $ "extra" <map or nil>). Renders nothing when both are empty.
*/}}
{{- define "ipvs-janitor.annotations" -}}
{{- $a := merge (deepCopy (.extra | default dict)) (deepCopy (.ctx.Values.commonAnnotations | default dict)) }}
{{- with $a }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "ipvs-janitor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ipvs-janitor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Container image reference.
*/}}
{{- define "ipvs-janitor.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Whether the metrics Service is rendered (explicitly, or because a ServiceMonitor needs it).
*/}}
{{- define "ipvs-janitor.metricsServiceEnabled" -}}
{{- if or .Values.metrics.service.enabled .Values.metrics.serviceMonitor.enabled }}true{{ end }}
{{- end }}

{{/*
Checks that values are consistent; fails the render otherwise.
*/}}
{{- define "ipvs-janitor.validate" -}}
{{- if and .Values.kubeProxy.configMap .Values.nodePortAddresses }}
{{- fail "kubeProxy.configMap and nodePortAddresses are both set: the agent takes nodePortAddresses from kube-proxy's own configuration; leave nodePortAddresses empty" }}
{{- end }}
{{- if and .Values.setSysctls (ne .Values.securityContext.mode "privileged") }}
{{- fail (printf "setSysctls=true requires securityContext.mode=privileged (got %q): /proc/sys is read-only in unprivileged containers, so --set-sysctls could not write net.ipv4.vs.*" .Values.securityContext.mode) }}
{{- end }}
{{- end }}

{{/*
Where kube-proxy's configuration file is mounted in the container.
*/}}
{{- define "ipvs-janitor.kubeProxyConfigDir" -}}
/etc/ipvs-janitor/kube-proxy
{{- end }}

{{/*
Container securityContext for the selected mode.
*/}}
{{- define "ipvs-janitor.containerSecurityContext" -}}
{{- if eq .Values.securityContext.mode "privileged" }}
privileged: true
runAsUser: 0
runAsNonRoot: false
readOnlyRootFilesystem: true
{{- else if eq .Values.securityContext.mode "netAdmin" }}
# IPVS netlink (and conntrack deletes) need CAP_NET_ADMIN in the host network namespace: root with
# exactly that capability is enough under hostNetwork.
privileged: false
runAsUser: 0
runAsNonRoot: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  add:
    - NET_ADMIN
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- else }}
{{- fail (printf "securityContext.mode must be privileged or netAdmin, got %q" .Values.securityContext.mode) }}
{{- end }}
{{- end }}
