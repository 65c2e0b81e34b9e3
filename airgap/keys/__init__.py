"""Keys: cosign-compatible key files and key references. Signing and verifying bytes, nothing about images.

:mod:`~airgap.keys.public` loads public keys and checks signatures; :mod:`~airgap.keys.private` reads and
writes cosign's encrypted private key files and signs; :mod:`~airgap.keys.pem` is PEM plumbing;
:mod:`~airgap.keys.pkcs11` keeps keys on a token; :mod:`~airgap.keys.passwords` finds the passwords and PINs;
:mod:`~airgap.keys.references` turns what ``--key`` names into keys and signers.
"""
