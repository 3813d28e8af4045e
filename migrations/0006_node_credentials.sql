-- Node identities and the gateways' signing key (docs/SECURITY.md, "A compromised node").
--
-- node_credentials keeps only a node's Ed25519 public key: a copy of the database can check a
-- node's reports but not forge one. A revoked credential stays listed (revoked_at set) so that a
-- node of that name is refused, not mistaken for one that never had a credential.
CREATE TABLE node_credentials (
    name text PRIMARY KEY,
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- The key pair every gateway signs work items with (one row per purpose, made by the first
-- gateway or operator command that needs it); nodes hold the public key.
CREATE TABLE signing_keys (
    purpose text PRIMARY KEY,
    private_key bytea NOT NULL CHECK (length(private_key) = 32),
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
