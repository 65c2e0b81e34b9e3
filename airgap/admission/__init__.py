"""Kubernetes validating admission webhook over the offline verifier.

``review`` parses AdmissionReview v1 requests (and says which kinds it understands: the rest is denied),
``decide`` turns per-image verdicts into an answer under the webhook's mode, ``cache`` keeps decisions by
(ref, digest, policy digest, trust digest), ``budget`` bounds verifications (how many at once, how much
each reads), ``service`` is the webhook without HTTP, ``guard`` keeps slow clients from starving it,
``server`` serves it all over HTTPS, ``manifests`` writes the Kubernetes objects and certificates to deploy
it (and the memory arithmetic behind its limit).
"""
