-- Failed logins per (username, client): a client is the reply address a login came from. Guessing
-- from one address is slowed up to THROTTLE_CLIENT_MAX_SECONDS; login_throttle (per username,
-- whoever fails) only up to THROTTLE_MAX_SECONDS, so someone else's failures keep the real user
-- out for about a minute at most (store/users.py).
CREATE TABLE login_throttle_client (
    username      text NOT NULL,
    client        text NOT NULL,
    failures      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (username, client)
);
CREATE INDEX login_throttle_client_updated ON login_throttle_client (updated_at);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);
