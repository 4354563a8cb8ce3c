{{- define "forecast-operator.name" -}}forecast-operator{{- end -}}
{{- define "forecast-operator.labels" -}}
app.kubernetes.io/name: forecast-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "forecast-operator.serviceAccountName" -}}
{{- default (printf "%s-forecast-operator" .Release.Name) .Values.serviceAccount.name -}}
{{- end -}}
{{- define "forecast-operator.webhookSecretName" -}}
{{- default (printf "%s-forecast-operator-webhook" .Release.Name) .Values.webhook.existingSecret -}}
{{- end -}}
