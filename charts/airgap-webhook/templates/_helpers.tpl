{{/*
The second spelling of airgap/admission/manifests.py: render(). Every object here must be the object `airgap webhook
manifests` renders for the same settings (tests/integration/test_webhook_chart.py compares them one by one).
*/}}

{{- define "airgap.labels" -}}
app.kubernetes.io/name: {{ .Values.name | quote }}
app.kubernetes.io/part-of: airgap
{{- end }}

{{- define "airgap.metadata" -}}
name: {{ .Values.name | quote }}
namespace: {{ .Release.Namespace | quote }}
labels:
  {{- include "airgap.labels" . | nindent 2 }}
{{- end }}

{{/* The ConfigMap key of a trust file: its path with '/' as '.' and any other character a key cannot hold as '-'. */}}
{{- define "airgap.configmapKey" -}}
{{- regexReplaceAll "[^-._a-zA-Z0-9]" (replace "/" "." .) "-" -}}
{{- end }}

{{/* The trust files as a dict path -> content (paths in sorted order are its keys, sorted). */}}
{{- define "airgap.trustFiles" -}}
{{- $files := dict -}}
{{- $keys := dict -}}
{{- range .Values.trust.files -}}
{{- if not .path }}{{ fail "trust.files: every entry needs a path" }}{{ end -}}
{{- if or (hasPrefix "/" .path) (has ".." (splitList "/" .path)) -}}
{{- fail (printf "trust.files: path %q must be relative, without '..'" .path) -}}
{{- end -}}
{{- $key := include "airgap.configmapKey" .path -}}
{{- if hasKey $keys $key -}}
{{- fail (printf "trust files %s and %s would share the ConfigMap key %s: rename one" (get $keys $key) .path $key) -}}
{{- end -}}
{{- $_ := set $keys $key .path -}}
{{- $_ := set $files .path (.content | default "") -}}
{{- end -}}
{{- if not (hasKey $files "policy.yaml") -}}
{{- fail "trust.files has no policy.yaml: the webhook would deny everything" -}}
{{- end -}}
{{- toJson $files -}}
{{- end }}

{{- define "airgap.image" -}}
{{- $i := .Values.image -}}
{{- if not $i.repository }}{{ fail "image.repository is required (the airgap image in your local registry)" }}{{ end -}}
{{- $i.repository }}{{ if $i.tag }}:{{ $i.tag }}{{ end }}{{ if $i.digest }}@{{ $i.digest }}{{ end -}}
{{- end }}

{{- define "airgap.check" -}}
{{- $dns := "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" -}}
{{- range $what, $value := dict "name" .Values.name "namespace" .Release.Namespace -}}
{{- if not (regexMatch $dns $value) -}}
{{- fail (printf "%s %q is not a valid Kubernetes name (lowercase letters, digits, '-')" $what $value) -}}
{{- end -}}
{{- end -}}
{{- range .Values.namespaceSelector.excludeNamespaces -}}
{{- if not (regexMatch $dns .) -}}
{{- fail (printf "excluded namespace %q is not a valid Kubernetes name (lowercase letters, digits, '-')" .) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.tls.ca }}{{ fail "tls.ca is required (ca.crt from `airgap webhook certs`: the caBundle)" }}{{ end -}}
{{- if and (not .Values.tls.existingSecret) (not (and .Values.tls.crt .Values.tls.key)) -}}
{{- fail "tls: give crt and key (from `airgap webhook certs`) or existingSecret" -}}
{{- end -}}
{{- end }}

{{/* One webhook registration; . is a dict: root, name, path. */}}
{{- define "airgap.webhook" -}}
{{- $ := .root -}}
- name: {{ .name | quote }}
  clientConfig:
    service:
      name: {{ $.Values.name | quote }}
      namespace: {{ $.Release.Namespace | quote }}
      path: {{ .path | quote }}
      port: 443
    caBundle: {{ $.Values.tls.ca | b64enc | quote }}
  rules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [pods, pods/ephemeralcontainers, replicationcontrollers]
      scope: Namespaced
    - apiGroups: [apps]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [deployments, replicasets, statefulsets, daemonsets]
      scope: Namespaced
    - apiGroups: [batch]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [jobs, cronjobs]
      scope: Namespaced
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: {{ int $.Values.timeoutSeconds }}
  matchPolicy: Equivalent
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: NotIn
        values: {{ concat (list $.Release.Namespace "kube-system") $.Values.namespaceSelector.excludeNamespaces | uniq | sortAlpha | toJson }}
      - key: airgap.dev/exclude
        operator: NotIn
        values: ["true"]
      {{- if $.Values.namespaceSelector.optIn }}
      - key: airgap.dev/include
        operator: In
        values: ["true"]
      {{- end }}
{{- end }}
