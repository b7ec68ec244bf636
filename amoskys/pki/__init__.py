"""The appliance's public-key infrastructure, one concept per module (DESIGN §3, §8).

- ``signatures``: the per-batch signature contract (sign, verify, the hash chain) — all the bus needs to
  verify a batch; it imports Ed25519 and SHA-256 only, never ``cryptography.x509``.
- ``names``: identity names, identity URIs and the peer identity grpc reports for an mTLS client.
- ``identities``: Ed25519 identity keys on disk and their key ids.
- ``layout``: where the appliance's PKI files live (``ApplianceCredentials``).
- ``issuance``: the CA, server and client certificates; creating, checking and renewing them.
- ``enrolment``: enrolling a remote agent: its bundle on disk and ``pki/agents/<name>.crt``.
- ``tokens``: one-time enrolment tokens as text, the hash the appliance keeps, CA fingerprints.
- ``csr``: certificate requests and Ed25519 proofs of possession; issuing for a request's key.
- ``enrol_client``: an endpoint enrolling itself with a token (its keys made and kept there).
- ``renewal``: an agent renewing its client certificate over the bus before it expires.

Everything cryptographic is done by the ``cryptography`` library; these modules only decide what to
issue, where it lives on disk and how the pieces are checked against each other. Secrets are written
atomically (a 0600 temp file created with ``os.open``, fsynced, renamed over the target, directory
fsynced) and never printed or logged; error messages name files, never contents.
"""
