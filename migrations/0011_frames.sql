-- Each finished frame as its node reported it: which node and attempt made it, how long it took,
-- where the file is, its size and checksum, and a small PNG thumbnail (at most 32 KiB) so that the
-- farm can show the frame to people who cannot reach the render storage. One row per frame: a
-- later attempt that renders it again replaces the row. Goes with its job (and its task).
CREATE TABLE frames (
    job_id      bigint NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    frame       integer NOT NULL,
    task_id     bigint NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    node        text NOT NULL,
    seconds     double precision NOT NULL CHECK (seconds >= 0),
    file        text NOT NULL,
    bytes       bigint NOT NULL CHECK (bytes >= 0),
    sha256      text NOT NULL,
    thumb       bytea CHECK (octet_length(thumb) <= 32768),
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, frame)
);
CREATE INDEX frames_task ON frames (task_id);

-- `rfarmctl hooks`: how far each named hook runner has got through the jobs' finishes (the id of
-- the last job_history row into a terminal status whose hook ran to the end). A runner killed and
-- started again goes on after it: no finish missed, none whose hook had ended run twice.
CREATE TABLE hook_cursors (
    name       text PRIMARY KEY,
    last_id    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
