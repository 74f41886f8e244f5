{{/* Names. */}}
{{- define "gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gateway.fullname" -}}
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

{{- define "gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: server, worker or migration. */}}
{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gateway.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gateway.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "gateway.appSecret" -}}
{{- .Values.database.app.secretName | default (printf "%s-db-app" (include "gateway.fullname" .)) }}
{{- end }}

{{- define "gateway.ownerSecret" -}}
{{- .Values.database.owner.secretName | default (printf "%s-db-owner" (include "gateway.fullname" .)) }}
{{- end }}

{{- define "gateway.keysSecret" -}}
{{- .Values.signingKeys.secretName | default (printf "%s-signing-keys" (include "gateway.fullname" .)) }}
{{- end }}

{{/* Where things live in the container (the image's layout, Dockerfile). */}}
{{- define "gateway.paths" -}}
config: /etc/gateway/config/gateway.yaml
keys: /var/lib/gateway/keys
data: /var/lib/gateway/data
checkpoints: /var/lib/gateway/checkpoints
conformance: /etc/gateway/conformance
opaConfig: /etc/opa/config
opaKey: /etc/opa/keys
opaToken: /etc/opa/token
grants: /etc/gateway/grants
{{- end }}

{{/*
The gateway's config file: the user's `config` with the keys the chart owns set by the
chart. Setting one of those in `config` fails the render rather than being silently
overridden.
*/}}
{{- define "gateway.config" -}}
{{- $paths := include "gateway.paths" . | fromYaml }}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- range $key := list "storage" "policy" "data_dir" }}
{{- if hasKey $config $key }}
{{- fail (printf "config.%s is set by the chart: use the values database, policy and checkpoints instead (docs/kubernetes.md)" $key) }}
{{- end }}
{{- end }}
{{- $server := get $config "server" | default dict }}
{{- range $key := list "host" "port" }}
{{- if hasKey $server $key }}
{{- fail (printf "config.server.%s is set by the chart (containerPort)" $key) }}
{{- end }}
{{- end }}
{{- $_ := set $server "host" "0.0.0.0" }}
{{- $_ := set $server "port" (int .Values.containerPort) }}
{{- $_ := set $config "server" $server }}
{{- $identity := get $config "identity" | default dict }}
{{- if not (get $identity "issuers") }}
{{- fail "config.identity.issuers is required: the issuers whose tokens the gateway accepts (docs/configuration.md)" }}
{{- end }}
{{- if hasKey $identity "signing_key_file" }}
{{- fail "config.identity.signing_key_file is set by the chart (signingKeys.secretName)" }}
{{- end }}
{{- $_ := set $identity "signing_key_file" (printf "%s/gateway-signing.pem" $paths.keys) }}
{{- $_ := set $config "identity" $identity }}
{{- $audit := get $config "audit" | default dict }}
{{- range $key := list "signing_key_file" "checkpoint_dir" }}
{{- if hasKey $audit $key }}
{{- fail (printf "config.audit.%s is set by the chart (signingKeys, checkpoints)" $key) }}
{{- end }}
{{- end }}
{{- $_ := set $audit "signing_key_file" (printf "%s/audit-signing.pem" $paths.keys) }}
{{- $_ := set $audit "checkpoint_dir" $paths.checkpoints }}
{{- $_ := set $config "audit" $audit }}
{{- $_ := set $config "storage" (dict "url" "${GATEWAY_DB_URL}") }}
{{- $_ := set $config "data_dir" $paths.data }}
{{- $_ := set $config "policy" (include "gateway.policyConfig" . | fromYaml) }}
{{- toYaml $config }}
{{- end }}

{{- define "gateway.policyConfig" -}}
{{- $paths := include "gateway.paths" . | fromYaml }}
{{- $p := .Values.policy }}
{{- $conformance := dict "on_start" $p.conformance.onStart }}
{{- if $p.conformance.configMap }}
{{- $_ := set $conformance "path" $paths.conformance }}
{{- end }}
{{- if eq $p.engine "embedded" }}
{{- if or $p.bundle.serviceUrl $p.bundle.resource }}
{{- fail "policy.bundle is loaded by the OPA sidecar: set policy.engine to opa (the embedded engine reads policy.embedded.path)" }}
{{- end }}
{{- $policy := dict "engine" "embedded" "path" $p.embedded.path "conformance" $conformance }}
{{- with $p.embedded.data }}
{{- $_ := set $policy "data" . }}
{{- end }}
{{- with $p.timeoutMs }}
{{- $_ := set $policy "timeout_ms" (int .) }}
{{- end }}
{{- toYaml $policy }}
{{- else if eq $p.engine "opa" }}
{{- include "gateway.requireBundle" . }}
{{- $policy := dict "engine" "opa" "url" "http://127.0.0.1:8181" "conformance" $conformance }}
{{- with $p.timeoutMs }}
{{- $_ := set $policy "timeout_ms" (int .) }}
{{- end }}
{{- toYaml $policy }}
{{- else }}
{{- fail (printf "policy.engine must be embedded or opa, not %q" $p.engine) }}
{{- end }}
{{- end }}

{{- define "gateway.requireBundle" -}}
{{- $b := .Values.policy.bundle }}
{{- if not (and $b.serviceUrl $b.resource) }}
{{- fail "policy.engine opa needs policy.bundle.serviceUrl and policy.bundle.resource" }}
{{- end }}
{{- if not $b.signing.keyId }}
{{- fail "policy.bundle.signing.keyId is required: an unsigned bundle is never loaded" }}
{{- end }}
{{- if eq (empty $b.signing.publicKey.configMap) (empty $b.signing.publicKey.secret) }}
{{- fail "policy.bundle.signing.publicKey: give exactly one of configMap and secret" }}
{{- end }}
{{- end }}

{{/* OPA's own config file (https://www.openpolicyagent.org/docs/configuration). */}}
{{- define "gateway.opaConfig" -}}
{{- $paths := include "gateway.paths" . | fromYaml }}
{{- $b := .Values.policy.bundle }}
{{- $service := dict "url" $b.serviceUrl }}
{{- if $b.bearerToken.secretName }}
{{- $_ := set $service "credentials" (dict "bearer" (dict "token_path" (printf "%s/%s" $paths.opaToken $b.bearerToken.secretKey))) }}
{{- end }}
{{- $bundle := dict "service" "policy-bundles" "resource" $b.resource "signing" (dict "keyid" $b.signing.keyId) "polling" (dict "min_delay_seconds" (int $b.polling.minDelaySeconds) "max_delay_seconds" (int $b.polling.maxDelaySeconds)) }}
{{- /* The key's PEM arrives with --set-file from the mounted ConfigMap or Secret. */}}
{{- $config := dict "services" (dict "policy-bundles" $service) "bundles" (dict "gateway" $bundle) "keys" (dict $b.signing.keyId (dict "algorithm" $b.signing.algorithm)) }}
{{- if .Values.policy.opa.decisionLogsConsole }}
{{- $_ := set $config "decision_logs" (dict "console" true) }}
{{- end }}
{{- toYaml (mergeOverwrite $config (deepCopy .Values.policy.opa.extraConfig)) }}
{{- end }}

{{/* The OPA sidecar: its API on the pod's loopback only, health on a diagnostic port. */}}
{{- define "gateway.opaContainer" -}}
{{- $paths := include "gateway.paths" . | fromYaml }}
{{- $b := .Values.policy.bundle }}
- name: opa
  image: "{{ .Values.policy.opa.image.repository }}:{{ .Values.policy.opa.image.tag }}"
  imagePullPolicy: {{ .Values.policy.opa.image.pullPolicy }}
  args:
    - run
    - --server
    - --addr=127.0.0.1:8181
    - --diagnostic-addr=0.0.0.0:8282
    - --config-file={{ $paths.opaConfig }}/config.yaml
    - --set-file=keys.{{ $b.signing.keyId }}.key={{ $paths.opaKey }}/{{ $b.signing.publicKey.key }}
    - --log-format=json
    - --skip-version-check
  ports:
    - name: opa-diag
      containerPort: 8282
  readinessProbe:
    httpGet: {path: "/health?bundles", port: opa-diag}
    periodSeconds: 5
  livenessProbe:
    httpGet: {path: /health, port: opa-diag}
    periodSeconds: 10
  securityContext: {{- toYaml .Values.securityContext | nindent 4 }}
  resources: {{- toYaml .Values.policy.opa.resources | nindent 4 }}
  volumeMounts:
    - {name: opa-config, mountPath: {{ $paths.opaConfig }}, readOnly: true}
    - {name: opa-key, mountPath: {{ $paths.opaKey }}, readOnly: true}
    {{- if $b.bearerToken.secretName }}
    - {name: opa-token, mountPath: {{ $paths.opaToken }}, readOnly: true}
    {{- end }}
{{- end }}

{{- define "gateway.opaVolumes" -}}
{{- $b := .Values.policy.bundle }}
- name: opa-config
  configMap: {name: {{ include "gateway.fullname" . }}-opa}
- name: opa-key
  {{- if $b.signing.publicKey.configMap }}
  configMap:
    name: {{ $b.signing.publicKey.configMap }}
    items: [{key: {{ $b.signing.publicKey.key }}, path: {{ $b.signing.publicKey.key }}}]
  {{- else }}
  secret:
    secretName: {{ $b.signing.publicKey.secret }}
    items: [{key: {{ $b.signing.publicKey.key }}, path: {{ $b.signing.publicKey.key }}}]
  {{- end }}
{{- if $b.bearerToken.secretName }}
- name: opa-token
  secret:
    secretName: {{ $b.bearerToken.secretName }}
    items: [{key: {{ $b.bearerToken.secretKey }}, path: {{ $b.bearerToken.secretKey }}}]
{{- end }}
{{- end }}

{{/* What the gateway and worker containers share: environment and mounts. */}}
{{- define "gateway.env" -}}
- name: GATEWAY_DB_URL
  valueFrom:
    secretKeyRef: {name: {{ include "gateway.appSecret" . }}, key: {{ .Values.database.app.secretKey }}}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gateway.volumeMounts" -}}
{{- $paths := include "gateway.paths" . | fromYaml }}
- {name: config, mountPath: {{ dir $paths.config }}, readOnly: true}
- {name: signing-keys, mountPath: {{ $paths.keys }}, readOnly: true}
- {name: data, mountPath: {{ $paths.data }}}
- {name: checkpoints, mountPath: {{ $paths.checkpoints }}}
- {name: tmp, mountPath: /tmp}
{{- if .Values.policy.conformance.configMap }}
- {name: conformance, mountPath: {{ $paths.conformance }}, readOnly: true}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gateway.volumes" -}}
- name: config
  configMap: {name: {{ include "gateway.fullname" . }}}
- name: signing-keys
  secret:
    secretName: {{ include "gateway.keysSecret" . }}
    # Group-readable by the pod's fsGroup only: a Secret volume cannot be 0600 and
    # owned by the gateway's user.
    defaultMode: 0440
- name: data
  emptyDir: {}
- name: checkpoints
  {{- if .Values.checkpoints.existingClaim }}
  persistentVolumeClaim: {claimName: {{ .Values.checkpoints.existingClaim }}}
  {{- else }}
  emptyDir: {}
  {{- end }}
- name: tmp
  emptyDir: {}
{{- if .Values.policy.conformance.configMap }}
- name: conformance
  configMap: {name: {{ .Values.policy.conformance.configMap }}}
{{- end }}
{{- if eq .Values.policy.engine "opa" }}
{{ include "gateway.opaVolumes" . }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level settings the gateway, worker and migration pods share. */}}
{{- define "gateway.podSettings" -}}
automountServiceAccountToken: false
securityContext: {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
