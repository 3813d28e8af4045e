-- Per-user quotas set by an operator (`rfarmctl quota`): the farm's defaults (one row, made here
-- with values that protect a farm out of the box) and each user's overrides (a NULL column takes
-- the default). store/quotas.py reads them; submit checks them in its one statement (store/jobs.py).
CREATE TABLE quota_defaults (
    one                     boolean PRIMARY KEY DEFAULT true CHECK (one),
    max_queued_tasks        integer NOT NULL CHECK (max_queued_tasks >= 0),
    max_submits_per_minute  integer NOT NULL CHECK (max_submits_per_minute >= 0),
    max_watches             integer NOT NULL CHECK (max_watches >= 0)
);
INSERT INTO quota_defaults (max_queued_tasks, max_submits_per_minute, max_watches) VALUES (100000, 60, 16);

CREATE TABLE user_quotas (
    user_id                 bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    max_queued_tasks        integer CHECK (max_queued_tasks >= 0),
    max_submits_per_minute  integer CHECK (max_submits_per_minute >= 0),
    max_watches             integer CHECK (max_watches >= 0)
);

-- Submits per user in the current minute (a fixed window): the submit statement counts itself here.
CREATE TABLE submit_windows (
    user_id  bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    minute   timestamptz NOT NULL,
    submits  integer NOT NULL
);
