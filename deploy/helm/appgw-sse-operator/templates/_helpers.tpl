{{/*
The release's base name: the chart name `appgw-sse-operator` when the release name contains it
or is a dash-separated prefix of it (`appgw-sse`: the README's federation subject
`appgw-sse-system/appgw-sse-operator`), else `<release>-appgw-sse-operator`. nameOverride
replaces the chart name, fullnameOverride the whole result.
*/}}
{{- define "appgw-sse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "appgw-sse.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "appgw-sse.name" . -}}
{{- if or (contains $name .Release.Name) (hasPrefix (printf "%s-" .Release.Name) $name) -}}
{{- $name -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Names outside the release namespace (ClusterRoles, Roles in watched namespaces) carry the
release namespace too: two releases of the same name in two namespaces must not share them.
*/}}
{{- define "appgw-sse.globalName" -}}
{{- printf "%s-%s" (include "appgw-sse.fullname" .) .Release.Namespace -}}
{{- end -}}

{{- define "appgw-sse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "appgw-sse.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "appgw-sse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "appgw-sse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "appgw-sse.labels" -}}
{{ include "appgw-sse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "appgw-sse.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Removes every `x-kubernetes-validations` below a map or list, in place. */}}
{{- define "appgw-sse.dropValidationRules" -}}
{{- if kindIs "map" . -}}
{{- $_ := unset . "x-kubernetes-validations" -}}
{{- range $_, $child := . -}}{{- include "appgw-sse.dropValidationRules" $child -}}{{- end -}}
{{- else if kindIs "slice" . -}}
{{- range . -}}{{- include "appgw-sse.dropValidationRules" . -}}{{- end -}}
{{- end -}}
{{- end -}}

{{/* What the operator does to routes, pods, services and events where it watches. */}}
{{- define "appgw-sse.watchRules" -}}
# Routes: watch them, add and remove the finalizer and kopf's annotations, write their status.
- apiGroups: [sse.appgw.dev]
  resources: [sseroutes]
  verbs: [get, list, watch, patch]
- apiGroups: [sse.appgw.dev]
  resources: [sseroutes/status]
  verbs: [get, patch]
# Events: list only once at start, for those already posted (no warning twice per restart).
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
# Backend pods: patches touch only sse.appgw.dev/* annotations.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch]
{{- if .Values.agic.enabled }}
# AGIC mode: Ingresses routing to a route's Service; patches touch only AGIC's three
# appgw.ingress.kubernetes.io/ timeout and draining annotations.
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [list, watch, patch]
{{- end }}
{{- end -}}

{{/* "true" when the admission policy is rendered: with RBAC, on a cluster that serves
     admissionregistration.k8s.io/v1 policies, or wherever rbac.admissionPolicy says always. */}}
{{- define "appgw-sse.admissionPolicy" -}}
{{- $mode := .Values.rbac.admissionPolicy -}}
{{- $served := .Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy" -}}
{{- and .Values.rbac.create (or (eq $mode "always") (and (eq $mode "auto") $served)) -}}
{{- end }}
