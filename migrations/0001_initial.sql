-- rfarm: the whole state of the farm. PostgreSQL is the single source of truth.

CREATE TABLE users (
    id              bigserial PRIMARY KEY,
    username        text NOT NULL UNIQUE,
    password_hash   text NOT NULL,
    is_admin        boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- failed logins by username, known or not, so that throttling tells nobody which users exist
CREATE TABLE login_throttle (
    username      text PRIMARY KEY,
    failures      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    token_hash  bytea PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE jobs (
    id            bigserial PRIMARY KEY,
    owner_id      bigint NOT NULL REFERENCES users(id),
    name          text NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    paused        boolean NOT NULL DEFAULT false,
    renderer      text NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}',
    frame_first   integer NOT NULL,
    frame_last    integer NOT NULL CHECK (frame_last >= frame_first),
    chunk         integer NOT NULL CHECK (chunk >= 1),
    priority      integer NOT NULL CHECK (priority BETWEEN 0 AND 100),
    max_attempts  integer NOT NULL CHECK (max_attempts >= 1),
    pool          text NOT NULL DEFAULT 'default',
    requires      text[] NOT NULL DEFAULT '{}',
    after_job     bigint REFERENCES jobs(id),
    frames_total  integer NOT NULL,
    frames_done   integer NOT NULL DEFAULT 0,
    tasks_total   integer NOT NULL,
    reason        text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX jobs_owner ON jobs (owner_id, id DESC);
CREATE INDEX jobs_owner_status ON jobs (owner_id, status, id DESC);
CREATE INDEX jobs_status ON jobs (status, id DESC);
CREATE INDEX jobs_after ON jobs (after_job) WHERE after_job IS NOT NULL;

CREATE TABLE tasks (
    id             bigserial PRIMARY KEY,
    job_id         bigint NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    seq            integer NOT NULL,
    frame_first    integer NOT NULL,
    frame_last     integer NOT NULL,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt        integer NOT NULL DEFAULT 0,   -- starts so far; each start is a new attempt
    failures       integer NOT NULL DEFAULT 0,   -- failed attempts and lost leases
    run_id         text,                         -- the current start's id; reports from others are stale
    done_frames    integer NOT NULL DEFAULT 0,
    work_msg       text,                         -- the work stream entry that carries it
    node           text,
    -- copied from the job so that the dispatcher's ordered scan is one index walk
    pool           text NOT NULL,
    priority       integer NOT NULL,
    dispatched_at  timestamptz,
    lease_until    timestamptz,
    started_at     timestamptz,
    finished_at    timestamptz,
    exit_code      integer,
    error          text,
    UNIQUE (job_id, seq)
);
-- the ready-window scan: queued work not yet handed to Redis, best first
CREATE INDEX tasks_ready ON tasks (pool, priority DESC, job_id, seq)
    WHERE status = 'queued' AND dispatched_at IS NULL;
CREATE INDEX tasks_dispatched ON tasks (dispatched_at) WHERE status = 'queued' AND dispatched_at IS NOT NULL;
CREATE INDEX tasks_running ON tasks (lease_until) WHERE status = 'running';

CREATE TABLE job_history (
    id           bigserial PRIMARY KEY,
    job_id       bigint NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    from_status  text,
    to_status    text NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason       text NOT NULL,
    actor        text NOT NULL
);
CREATE INDEX job_history_job ON job_history (job_id, id);

CREATE TABLE task_history (
    id           bigserial PRIMARY KEY,
    task_id      bigint NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    job_id       bigint NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    reason       text NOT NULL,
    actor        text NOT NULL
);
CREATE INDEX task_history_job ON task_history (job_id, id);
CREATE INDEX task_history_task ON task_history (task_id);

CREATE TABLE task_logs (
    task_id   bigint NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    attempt   integer NOT NULL,
    node      text,
    output    text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE task_blocklist (
    job_id    bigint NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    node      text NOT NULL,
    failures  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, node)
);

-- exactly-once effects: a request id, the hash of its body, and the reply it got
CREATE TABLE inbox (
    request_id  uuid PRIMARY KEY,
    body_hash   bytea NOT NULL,
    reply       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_created ON inbox (created_at);

-- messages that must follow a commit (notices to watching shells)
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    stream      text NOT NULL,
    payload     bytea NOT NULL,
    ttl         integer NOT NULL DEFAULT 600,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE nodes (
    id          text PRIMARY KEY,
    pool        text NOT NULL,
    slots       integer NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    profiles    text[] NOT NULL DEFAULT '{}',
    running     bigint[] NOT NULL DEFAULT '{}',
    version     text NOT NULL DEFAULT '',
    host        text NOT NULL DEFAULT '',
    lease       double precision NOT NULL DEFAULT 30,
    specs       jsonb NOT NULL DEFAULT '{}',
    state       text NOT NULL DEFAULT 'idle',
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
