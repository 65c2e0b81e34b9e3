"""Kubernetes admission webhooks over the offline verifier: validating (decide) and mutating (pin digests).

``review`` parses AdmissionReview v1 requests (and says which kinds it understands: the rest is denied),
``decide`` turns per-image verdicts into an answer under the webhook's mode, ``pin`` turns them into the
JSONPatch that pins verified digests, ``cache`` keeps decisions by (ref, digest, policy digest, trust digest)
and the mutating webhook's short tag window, ``budget`` bounds verifications (how many at once, how much
each reads), ``service`` is the webhook without HTTP, ``guard`` keeps slow clients from starving it,
``server`` serves it all over HTTPS, ``manifests`` writes the Kubernetes objects, Helm values and
certificates to deploy it (and the memory arithmetic behind its limit).
"""
