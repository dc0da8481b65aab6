{{- /*
Shared pieces of the moorage-operator chart. Object names are fixed (moorage-operator,
moorage-webhook, ...), as in the kustomize install: the Lease and several cluster-scoped objects
carry them, so one cluster runs one Moorage. Selectors carry only the kustomize labels, so that a
Deployment installed with kustomize can be taken over by the chart and the other way round.
*/}}

{{- /* The labels of every object: kustomize's, plus Helm's own. Call with (dict "root" $ "component" "operator"). */}}
{{- define "moorage.labels" -}}
app.kubernetes.io/name: moorage
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
app.kubernetes.io/part-of: moorage
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end }}

{{- /* A component's pods: the selector labels. */}}
{{- define "moorage.selector" -}}
app.kubernetes.io/name: moorage
app.kubernetes.io/component: {{ . }}
{{- end }}

{{- /* An image reference: repository@digest when pinned, else repository:tag (tag defaulting to appVersion). Call with (dict "root" $ "image" .Values.operator.image). */}}
{{- define "moorage.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- /* WATCH_NAMESPACES: comma-separated. With namespace scope the operator may watch only the
namespaces it holds RoleBindings in (anything else would be refused with 403 at runtime), so a
namespace outside allowedNamespaces fails the install instead. */}}
{{- define "moorage.watchNamespaces" -}}
{{- $operator := .Values.operator -}}
{{- if eq $operator.rbac.scope "namespace" -}}
{{- /* values.schema.json already requires at least one allowed namespace here. */}}
{{- $allowed := $operator.rbac.allowedNamespaces -}}
{{- $watched := $operator.watchNamespaces | default $allowed -}}
{{- range $watched -}}
{{- if not (has . $allowed) -}}
{{- fail (printf "operator.watchNamespaces: %q is not in operator.rbac.allowedNamespaces; with operator.rbac.scope namespace the operator may only watch namespaces it is allowed in" .) -}}
{{- end -}}
{{- end -}}
{{- join "," $watched -}}
{{- else -}}
{{- join "," $operator.watchNamespaces -}}
{{- end -}}
{{- end }}

{{- /* The Secret holding the webhook's serving certificate; fails when no source is chosen. */}}
{{- define "moorage.tlsSecretName" -}}
{{- if .Values.certManager.enabled -}}
moorage-webhook-tls
{{- else if .Values.tls.secretName -}}
{{- if not .Values.tls.caBundle -}}
{{- fail "tls.caBundle: set it to the base64 PEM of the CA that signed tls.secretName's certificate, so the apiserver can verify the webhook" -}}
{{- end -}}
{{ .Values.tls.secretName }}
{{- else -}}
{{- fail "webhook TLS: set certManager.enabled=true (cert-manager installed first) or certManager.enabled=false with tls.secretName and tls.caBundle naming a Secret provisioned in advance" -}}
{{- end -}}
{{- end }}

{{- /* Preferred spread across nodes and zones for a component's replicas. */}}
{{- define "moorage.spread" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "moorage.selector" . | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "moorage.selector" . | nindent 6 }}
{{- end }}

{{- /* Scheduling values shared by both Deployments' pod specs. Call with the component's values. */}}
{{- define "moorage.podScheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- /* A Prometheus duration of one unit (`15m`, values.schema.json allows no other) in words:
"15 minutes", for the alerts' descriptions. */}}
{{- define "moorage.durationWords" -}}
{{- $count := regexReplaceAll "[smh]$" . "" -}}
{{- $unit := get (dict "s" "second" "m" "minute" "h" "hour") (regexReplaceAll "^[0-9]+" . "") -}}
{{ $count }} {{ $unit }}{{ if ne $count "1" }}s{{ end }}
{{- end }}
