{{/* Resource name prefix: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "daas.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "daas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Names of the objects other objects refer to. */}}
{{- define "daas.hub" -}}{{ include "daas.fullname" . }}-hub{{- end -}}
{{- define "daas.proxy" -}}{{ include "daas.fullname" . }}-proxy{{- end -}}
{{- define "daas.proxyPublic" -}}{{ include "daas.fullname" . }}-proxy-public{{- end -}}
{{- define "daas.proxyApi" -}}{{ include "daas.fullname" . }}-proxy-api{{- end -}}
{{- define "daas.hubConfig" -}}{{ include "daas.fullname" . }}-hub-config{{- end -}}
{{- define "daas.generatedSecret" -}}{{ include "daas.fullname" . }}-hub-secret{{- end -}}
{{- define "daas.hubSecret" -}}{{ .Values.existingSecret | default (include "daas.generatedSecret" .) }}{{- end -}}

{{/* Selector labels of one component (hub, proxy, singleuser-server). */}}
{{- define "daas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "daas.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "daas.labels" -}}
{{ include "daas.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "daas.image" -}}
{{- printf "%s:%s" .image.name (.image.tag | default .root.Chart.AppVersion | toString) -}}
{{- end -}}

{{/* The container security context every container of this chart gets. */}}
{{- define "daas.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "daas.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A secret value generated once: kept from the live Secret on upgrade, else
random. Called with (dict "live" <lookup result> "key" "cookie-secret" "gen" "hex64").
*/}}
{{- define "daas.keptSecret" -}}
{{- if and .live .live.data (hasKey .live.data .key) -}}
{{- index .live.data .key -}}
{{- else if eq .gen "hex64" -}}
{{- randAlphaNum 48 | sha256sum | b64enc -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
Does ipBlock CIDR .cidr contain 169.254.169.254? Prints "true" or nothing.
IPv6 blocks never do.
*/}}
{{- define "daas.cidrHasMetadata" -}}
{{- if not (contains ":" .) -}}
{{- $parts := splitList "/" . -}}
{{- $bits := 32 -}}
{{- if eq (len $parts) 2 }}{{ $bits = atoi (index $parts 1) }}{{ end -}}
{{- $o := splitList "." (index $parts 0) -}}
{{- $ip := add (mul (atoi (index $o 0)) 16777216) (mul (atoi (index $o 1)) 65536) (mul (atoi (index $o 2)) 256) (atoi (index $o 3)) -}}
{{- $meta := add (mul 169 16777216) (mul 254 65536) (mul 169 256) 254 -}}
{{- $size := 1 -}}
{{- range until (sub 32 $bits | int) }}{{ $size = mul $size 2 }}{{ end -}}
{{- if eq (div $ip $size) (div $meta $size) }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* Egress rules with the metadata address excepted from every ipBlock containing it. */}}
{{- define "daas.safeEgress" -}}
{{- range . }}
{{- $rule := deepCopy . }}
{{- $to := list }}
{{- range ($rule.to | default list) }}
{{- $peer := deepCopy . }}
{{- if $peer.ipBlock }}
{{- if include "daas.cidrHasMetadata" $peer.ipBlock.cidr }}
{{- if hasSuffix "/32" $peer.ipBlock.cidr }}
{{- fail (printf "networkPolicy: %s is the cloud metadata address; no egress rule may open it" $peer.ipBlock.cidr) }}
{{- end }}
{{- $except := $peer.ipBlock.except | default list }}
{{- if not (has "169.254.169.254/32" $except) }}
{{- $_ := set $peer.ipBlock "except" (append $except "169.254.169.254/32") }}
{{- end }}
{{- end }}
{{- end }}
{{- $to = append $to $peer }}
{{- end }}
{{- if $rule.to }}{{ $_ := set $rule "to" $to }}{{ end }}
- {{ toJson $rule }}
{{- end }}
{{- end -}}
