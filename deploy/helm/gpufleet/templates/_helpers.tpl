{{/* Names and labels shared by every object. */}}
{{- define "gpufleet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gpufleet.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "agent"). */}}
{{- define "gpufleet.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "gpufleet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "gpufleet.agentImage" -}}
{{ .Values.agent.image.repository }}:{{ .Values.agent.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "gpufleet.kafkaSecret" -}}{{ include "gpufleet.fullname" . }}-kafka{{- end -}}
{{- define "gpufleet.clickhouseSecret" -}}{{ .Values.clickhouse.existingSecret | default (printf "%s-clickhouse" (include "gpufleet.fullname" .)) }}{{- end -}}

{{/* Non-empty on a sharded cluster (migrate.shardDatabase, docs/cluster.md), which needs migrate.onCluster. */}}
{{- define "gpufleet.sharded" -}}
{{- if .Values.migrate.shardDatabase -}}
{{- if not .Values.migrate.onCluster }}{{ fail "migrate.shardDatabase needs migrate.onCluster: the shard tables are created on every shard of that cluster" }}{{ end -}}
true
{{- end -}}
{{- end -}}

{{/* Whether any Kafka credential is mounted. */}}
{{- define "gpufleet.kafkaCredentials" -}}
{{- $t := .Values.kafka.tls -}}
{{- if or .Values.kafka.sasl.mechanism (and $t.enabled (or $t.existingSecret $t.ca $t.clientCert)) -}}true{{- end -}}
{{- end -}}

{{/* Environment of a Kafka client: (dict "ctx" $ "who" "agent"|"ingest"|"topics"). */}}
{{- define "gpufleet.kafkaEnv" -}}
{{- $k := .ctx.Values.kafka -}}
- name: GPUFLEET_BROKERS
  value: {{ $k.brokers | quote }}
- name: GPUFLEET_CONNECT_TIMEOUT
  value: {{ $k.connectTimeout | quote }}
{{- if $k.sasl.mechanism }}
{{- if not (has $k.sasl.mechanism (list "plain" "scram-sha-256" "scram-sha-512")) }}
{{- fail (printf "kafka.sasl.mechanism %q: want plain, scram-sha-256 or scram-sha-512" $k.sasl.mechanism) }}
{{- end }}
- name: GPUFLEET_KAFKA_SASL_MECHANISM
  value: {{ $k.sasl.mechanism | quote }}
- name: GPUFLEET_KAFKA_SASL_USER
  value: {{ (index $k.sasl .who).user | quote }}
- name: GPUFLEET_KAFKA_SASL_PASSWORD_FILE
  value: /etc/gpufleet/kafka/sasl-password
{{- end }}
{{- if $k.tls.enabled }}
- name: GPUFLEET_KAFKA_TLS
  value: "true"
{{- if or $k.tls.existingSecret $k.tls.ca }}
- name: GPUFLEET_KAFKA_TLS_CA
  value: /etc/gpufleet/kafka/ca.crt
{{- end }}
{{- if $k.tls.clientCert }}
- name: GPUFLEET_KAFKA_TLS_CERT
  value: /etc/gpufleet/kafka/tls.crt
- name: GPUFLEET_KAFKA_TLS_KEY
  value: /etc/gpufleet/kafka/tls.key
{{- end }}
{{- if $k.tls.serverName }}
- name: GPUFLEET_KAFKA_TLS_SERVER_NAME
  value: {{ $k.tls.serverName | quote }}
{{- end }}
{{- if $k.tls.insecureSkipVerify }}
- name: GPUFLEET_KAFKA_TLS_INSECURE_SKIP_VERIFY
  value: "true"
{{- end }}
{{- end }}
{{- end -}}

{{/* The projected volume of a Kafka client's credentials: (dict "ctx" $ "who" ...). */}}
{{- define "gpufleet.kafkaVolume" -}}
{{- $k := .ctx.Values.kafka -}}
- name: kafka-credentials
  projected:
    defaultMode: 0440
    sources:
{{- if $k.sasl.mechanism }}
      - secret:
          name: {{ $k.sasl.existingSecret | default (include "gpufleet.kafkaSecret" .ctx) }}
          items:
            - key: {{ .who }}-password
              path: sasl-password
{{- end }}
{{- if and $k.tls.enabled (or $k.tls.existingSecret $k.tls.ca $k.tls.clientCert) }}
      - secret:
          name: {{ $k.tls.existingSecret | default (include "gpufleet.kafkaSecret" .ctx) }}
          items:
{{- if or $k.tls.existingSecret $k.tls.ca }}
            - key: ca.crt
              path: ca.crt
{{- end }}
{{- if $k.tls.clientCert }}
            - key: tls.crt
              path: tls.crt
            - key: tls.key
              path: tls.key
{{- end }}
{{- end }}
{{- end -}}

{{- define "gpufleet.kafkaMount" -}}
- name: kafka-credentials
  mountPath: /etc/gpufleet/kafka
  readOnly: true
{{- end -}}

{{- define "gpufleet.commonEnv" -}}
- name: GPUFLEET_LOG_JSON
  value: {{ .Values.logJSON | quote }}
- name: GPUFLEET_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- end -}}

{{/* Pod-level settings every gpufleet pod shares: (dict "ctx" $ "uid" N). */}}
{{- define "gpufleet.podCommon" -}}
{{- $v := .ctx.Values -}}
automountServiceAccountToken: false
{{- with $v.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
securityContext:
  runAsNonRoot: {{ ne (int .uid) 0 }}
  runAsUser: {{ .uid }}
  runAsGroup: {{ $v.securityContext.runAsGroup }}
  fsGroup: {{ $v.securityContext.runAsGroup }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* A container's securityContext: (dict "ctx" $ "uid" N). */}}
{{- define "gpufleet.securityContext" -}}
{{- $sc := deepCopy .ctx.Values.securityContext -}}
{{- $_ := set $sc "runAsUser" .uid -}}
{{- $_ := set $sc "runAsNonRoot" (ne (int .uid) 0) -}}
{{ toYaml $sc }}
{{- end -}}
