-- The task numbers 0 .. n-1 of a job being submitted, for the statement that makes its tasks.
--
-- generate_series(0, $n - 1) has a planner support function that counts its rows only when n is
-- a constant: the prepared submit statement, planned generically, was estimated at 1,000 tasks
-- and so always planned again for its actual values (a third of its time). Declared ROWS 1 and
-- written in PL/pgSQL (never inlined), its estimate no longer depends on n, and the generic plan
-- is kept. The estimate is only that: a job of 5,000 tasks still gets its 5,000.
CREATE FUNCTION rfarm_task_seqs(n integer) RETURNS SETOF integer
    LANGUAGE plpgsql IMMUTABLE STRICT ROWS 1
AS $$
BEGIN
    RETURN QUERY SELECT generate_series(0, n - 1);
END
$$;
