-- The farm's identity: one row, made once with a random id. Every gateway announces it in Redis
-- (<prefix>:farm) and a shell keys its saved session by it, so a farm that comes back on another
-- address is still the same farm to its users.
CREATE TABLE farm_identity (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    farm_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO farm_identity DEFAULT VALUES;
