"""OCI plumbing: media types, digests, manifests, the registry client and image layouts."""
