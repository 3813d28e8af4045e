-- What submit's quota check reads (store/jobs.py), kept as running sums so that checking costs
-- the same whether the user has one unfinished job or ten thousand: each user's queued or running
-- tasks (the tasks_total of their unfinished jobs) and their submits in the current minute.
--
-- A user's load is split over shards, one per PostgreSQL connection (its backend pid, modulo 64):
-- a connection adds only to its own shard, so submits and job ends on different connections never
-- wait for each other's row locks (one row per user made every submit of a user wait for the
-- commit of the one before it), and a reader sums the shards of one user (at most 64 rows).
CREATE TABLE user_load (
    user_id       bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    shard         smallint NOT NULL,
    queued_tasks  bigint NOT NULL DEFAULT 0,
    minute        timestamptz NOT NULL DEFAULT 'epoch',  -- no minute yet (a value Python can read)
    submits       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, shard)
);

CREATE FUNCTION rfarm_load_shard() RETURNS smallint
    LANGUAGE sql STABLE AS 'SELECT (pg_backend_pid() % 64)::smallint';

-- A job counts its tasks_total while it is unfinished (finished_at is set exactly when a job
-- reaches a terminal status, and cleared when a retry brings it back): every insert, status change
-- and delete of a job moves its owner's running sum by what it changed.
CREATE FUNCTION rfarm_count_queued() RETURNS trigger
    LANGUAGE plpgsql AS $$
DECLARE
    owner bigint;
    delta bigint := 0;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        owner := OLD.owner_id;
        IF OLD.finished_at IS NULL THEN
            delta := delta - OLD.tasks_total;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        owner := NEW.owner_id;
        IF NEW.finished_at IS NULL THEN
            delta := delta + NEW.tasks_total;
        END IF;
    END IF;
    IF delta <> 0 THEN
        INSERT INTO user_load AS l (user_id, shard, queued_tasks) VALUES (owner, rfarm_load_shard(), delta)
        ON CONFLICT (user_id, shard) DO UPDATE SET queued_tasks = l.queued_tasks + EXCLUDED.queued_tasks;
    END IF;
    RETURN NULL;
END
$$;

-- no job changes while the sums are taken and the triggers made
LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE;

INSERT INTO user_load (user_id, shard, queued_tasks)
SELECT owner_id, 0, sum(tasks_total) FROM jobs WHERE finished_at IS NULL GROUP BY owner_id;

CREATE TRIGGER jobs_count_queued_new AFTER INSERT OR DELETE ON jobs
    FOR EACH ROW EXECUTE FUNCTION rfarm_count_queued();
CREATE TRIGGER jobs_count_queued_moved AFTER UPDATE OF finished_at, tasks_total ON jobs
    FOR EACH ROW WHEN (OLD.finished_at IS DISTINCT FROM NEW.finished_at OR OLD.tasks_total <> NEW.tasks_total)
    EXECUTE FUNCTION rfarm_count_queued();

-- replaced by user_load's per-shard minute counts
DROP TABLE submit_windows;
