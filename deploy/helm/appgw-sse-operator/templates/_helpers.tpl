{{- define "appgw-sse.name" -}}appgw-sse-operator{{- end -}}
{{- define "appgw-sse.labels" -}}
app.kubernetes.io/name: appgw-sse-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
