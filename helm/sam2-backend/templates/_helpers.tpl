{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "sam2-backend.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: fullnameOverride, else the release name (+ chart name unless it already holds it). */}}
{{- define "sam2-backend.fullname" -}}
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

{{- define "sam2-backend.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "sam2-backend.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sam2-backend.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels. */}}
{{- define "sam2-backend.labels" -}}
helm.sh/chart: {{ include "sam2-backend.chart" . }}
{{ include "sam2-backend.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: ml-backend
app.kubernetes.io/part-of: labelstack
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "sam2-backend.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sam2-backend.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, always by digest. */}}
{{- define "sam2-backend.image" -}}
{{- required "image.repository is required (the ECR repository URL of the SAM2 backend image)" .Values.image.repository -}}
@{{- required "image.digest is required (sha256:<64 hex>; `make images` prints it)" .Values.image.digest -}}
{{- end }}

{{/* Fail early on inputs that would start a backend in an unsafe or broken state. */}}
{{- define "sam2-backend.validate" -}}
{{- if and (not .Values.weights.allowRandom) (not .Values.weights.uri) }}
{{- fail "weights.uri is required (s3://<models bucket>/<key>); weights.allowRandom is for tests only" }}
{{- end }}
{{- if and .Values.weights.uri (not .Values.weights.sha256) }}
{{- fail "weights.sha256 is required with weights.uri (sha256sum of the checkpoint)" }}
{{- end }}
{{- if and (not .Values.auth.disabled) (not .Values.auth.existingSecret) }}
{{- fail "auth.existingSecret is required (a Secret with the basic-auth user and password); auth.disabled=true is the explicit opt-out" }}
{{- end }}
{{- end }}
