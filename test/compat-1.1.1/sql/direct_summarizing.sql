-- A use changes only columns that a BRIN index covers: since PostgreSQL 16
-- the update is HOT and only summarizing indexes take the new version
-- (TU_Summarizing; itm_compat.h maps 15's bool to it).  The direct path
-- must insert into those, as the executor does: a BRIN range summarized
-- before the use must afterwards still find the row by its new value
-- (skipping the insert, the bitmap scan would miss it).  Each way, the path
-- on and off, in a subtransaction that is rolled back.  The same answers
-- on every major.
\i sql/include/fixture.psql
UPDATE invitetomedia.settings SET enabled = true, link_reusability = 3;
CREATE INDEX summarizing_last_used ON invitetomedia.invites USING brin (last_used_at);
SELECT c.invite_id AS inv, c.token AS tok
  FROM invitetomedia.invite_create('live', 'owner', 'brin@outside.example', 'Brin', 'Range') c \gset
-- the use, then what the BRIN index finds by the value the use wrote
CREATE FUNCTION public.summarizing_use(tok text, direct boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    found_by_brin bigint;
    plan text;
BEGIN
    PERFORM set_config('invitetomedia.direct_use', CASE WHEN direct THEN 'on' ELSE 'off' END, true);
    -- the page range summarized with the values before the use
    PERFORM brin_summarize_new_values('invitetomedia.summarizing_last_used');
    SELECT c.status INTO st FROM invitetomedia.invite_consume(tok, 'brin@outside.example') c;
    PERFORM set_config('enable_seqscan', 'off', true);
    SELECT count(*) INTO found_by_brin FROM invitetomedia.invites
     WHERE last_used_at >= now() AND last_used_at <= now();
    RETURN st || ', found by the BRIN index: ' || found_by_brin;
END
$$;
CREATE FUNCTION pg_temp.each_way(tok text, direct boolean) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r text;
BEGIN
    BEGIN
        r := public.summarizing_use(tok, direct);
        RAISE EXCEPTION USING ERRCODE = 'IT000', MESSAGE = r;
    EXCEPTION WHEN SQLSTATE 'IT000' THEN
        RETURN SQLERRM;
    END;
END
$$;
-- the scan is the BRIN index's
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM invitetomedia.invites
 WHERE last_used_at >= now() AND last_used_at <= now();
RESET enable_seqscan;
SELECT pg_temp.each_way(:'tok', true) AS direct_on, pg_temp.each_way(:'tok', false) AS direct_off;
DROP FUNCTION public.summarizing_use(text, boolean);
DROP INDEX invitetomedia.summarizing_last_used;
