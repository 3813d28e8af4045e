-- Scheduling (issue 12): fair share between users, named limits, task timeouts.
--
-- tasks.owner_id is copied from the job (as pool and priority are) so that the dispatcher walks
-- each user's ready work in one index: store/dispatch.py takes the best few of every user and
-- deals them out in turn, balanced by the slots each user holds (running or dispatched tasks).
-- Every task gets it, finished ones too: a retry queues a finished job's tasks again.
ALTER TABLE tasks ADD COLUMN owner_id bigint;
UPDATE tasks t SET owner_id = j.owner_id FROM jobs j WHERE j.id = t.job_id;

-- the ready-window scan, per user: queued work not yet handed to Redis, best first
DROP INDEX tasks_ready;
CREATE INDEX tasks_ready ON tasks (pool, owner_id, priority DESC, job_id, seq)
    WHERE status = 'queued' AND dispatched_at IS NULL;
-- the slots each user holds now, and the tasks holding a limit: running or dispatched work
CREATE INDEX tasks_held ON tasks (pool, owner_id)
    WHERE status = 'running' OR (status = 'queued' AND dispatched_at IS NOT NULL);

-- An operator's weight per user (`rfarmctl share set USER WEIGHT`); a user without a row weighs 1.
CREATE TABLE user_shares (
    user_id  bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    weight   real NOT NULL CHECK (weight > 0 AND weight <= 1000)
);

-- Named counters (`rfarmctl limit set houdini-lic 4`): never more tasks running or dispatched
-- that take a limit than its count, across every gateway (the dispatcher locks the limit rows it
-- counts). A limit a job names that is not (or no longer) set caps nothing.
CREATE TABLE farm_limits (
    name        text PRIMARY KEY,
    count       integer NOT NULL CHECK (count >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- the limits a job's tasks take, and how long one of its renders may run (NULL: the profile's
-- default on the node, or no limit)
ALTER TABLE jobs ADD COLUMN limits text[] NOT NULL DEFAULT '{}',
                 ADD COLUMN task_timeout integer CHECK (task_timeout > 0);

-- A node an admin drained (`rfarm drain NODE`): it takes no new work, its running work finishes.
-- The dispatcher counts neither its slots nor its profiles; the node reads <prefix>:drain:<node>.
ALTER TABLE nodes ADD COLUMN drained boolean NOT NULL DEFAULT false;
