-- The farm's X25519 key pair, one for every gateway: shells seal passwords and tokens to its
-- public half (announced in Redis); only gateways, which hold the database, can open them.
-- One row: the first gateway to start makes it (INSERT ... ON CONFLICT DO NOTHING, then read).
CREATE TABLE gateway_key (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    private_key bytea NOT NULL CHECK (length(private_key) = 32),
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
