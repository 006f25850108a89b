{{/*
Names and labels shared by every template. Per-service helpers take a dict:
  root      the top-level context ($)
  name      the service key in .Values.services (contact, tag, ...)
  svc       that service's values
  component api | worker
*/}}

{{- define "scrm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scrm.fullname" -}}
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

{{- define "scrm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "scrm.commonLabels" -}}
helm.sh/chart: {{ include "scrm.chart" . }}
app.kubernetes.io/name: {{ include "scrm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scrm
{{- end }}

{{/* e.g. scrm-contact-api */}}
{{- define "scrm.componentName" -}}
{{- printf "%s-%s-%s" (include "scrm.fullname" .root) .name .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scrm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scrm.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
scrm.io/service: {{ .name }}
{{- end }}

{{- define "scrm.labels" -}}
{{ include "scrm.commonLabels" .root }}
app.kubernetes.io/component: {{ .component }}
scrm.io/service: {{ .name }}
{{- end }}

{{- define "scrm.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "scrm.configMapName" -}}
{{- printf "%s-env" (include "scrm.fullname" .) }}
{{- end }}

{{- define "scrm.secretName" -}}
{{- .Values.secret.name | default (printf "%s-secrets" (include "scrm.fullname" .)) }}
{{- end }}

{{/* The worker's Prometheus port: the API port + 100, as the services default to. */}}
{{- define "scrm.workerMetricsPort" -}}
{{- add (int .port) 100 }}
{{- end }}

{{/* Environment of a service container (API or worker). */}}
{{- define "scrm.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "scrm.configMapName" .root }}
env:
  - name: SCRM_JWT_SECRET
    valueFrom:
      secretKeyRef:
        name: {{ include "scrm.secretName" .root }}
        key: {{ .root.Values.secret.jwtSecretKey }}
  - name: SCRM_SECRETS_KEYS
    valueFrom:
      secretKeyRef:
        name: {{ include "scrm.secretName" .root }}
        key: {{ .root.Values.secret.secretsKeysKey }}
  - name: SCRM_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "scrm.secretName" .root }}
        key: {{ .root.Values.secret.databaseUrlKey }}
  - name: {{ required (printf "services.%s.portEnv is required" .name) .svc.portEnv }}
    value: {{ int .svc.port | quote }}
  - name: SCRM_WORKER_METRICS_PORT
    value: {{ include "scrm.workerMetricsPort" .svc | quote }}
  {{- with .svc.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Pod-level settings shared by API and worker pods. */}}
{{- define "scrm.podSpecCommon" -}}
# Kubernetes would otherwise inject <SERVICE>_PORT=tcp://... variables for every Service in
# the namespace: a Service named e.g. "scrm-metrics" would set SCRM_METRICS_PORT=tcp://...,
# which the settings read as the metrics API's port.
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir: {}
{{- end }}
