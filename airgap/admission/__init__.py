"""Kubernetes validating admission webhook over the offline verifier.

``review`` parses AdmissionReview v1 requests, ``decide`` turns per-image verdicts into an answer under the
webhook's mode, ``cache`` keeps decisions by (ref, digest, policy digest, trust digest), ``server`` serves
it all over HTTPS, ``manifests`` writes the Kubernetes objects and certificates to deploy it.
"""
