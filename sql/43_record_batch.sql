-- 43_record_batch.sql — recording many executions of one tenant in one statement.
--
-- record_executions is the batch entry point of pydbal's recorder (pydbal/recorder.py): one
-- statement per tenant and batch (on Citus, one call delegated to the tenant's worker), with the
-- guarantees of record_execution for every item, because each item goes through the same
-- dbal.record_one (sql/41_record_execution.sql):
--   * idempotent per execution id, within a batch too: a repeated id is 'duplicate', a 'pending'
--     followed by its final status in the same batch is 'completed', so a retried batch counts
--     nothing twice;
--   * fencing per item: an item with a stale token is 'refused' (4233), and only that item;
--   * the rows, the workflow's counters and the roll-ups change in the same transaction.
-- The workflows of a batch are locked first, in id order, so concurrent batches and single
-- calls over the same workflows wait for each other instead of deadlocking.

SET LOCAL ROLE @owner_role@;

-- record_executions(tenant, user, role, workflows[], statuses[], durations[], execution_ids[],
-- tokens[], started_at[], errors[]): records the items in array order and returns one row per
-- item: ord (1-based), execution_id, outcome ('recorded' | 'completed' | 'duplicate' |
-- 'refused') and, for 'refused', code, message and details (see record_one). Arrays must have
-- the same length, at most 10000 (else VALIDATION_ERROR 422 for the whole call); NULL elements
-- mean what NULL arguments of record_execution mean. FORBIDDEN (403) without a user and role.
CREATE FUNCTION dbal.record_executions(
        p_tenant text, p_user text, p_role text,
        p_workflows uuid[],
        p_statuses text[],
        p_durations double precision[],
        p_execution_ids text[],
        p_tokens bigint[],
        p_started_at timestamptz[],
        p_errors text[])
    RETURNS TABLE (ord integer, execution_id text, outcome text, code integer, message text,
                   details jsonb)
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    v_tenant text := dbal.enter(p_tenant, p_user, p_role);
    v_n integer := coalesce(cardinality(p_workflows), 0);
    r record;
BEGIN
    IF dbal.ctx_role() IS NULL OR dbal.ctx_user() IS NULL THEN
        PERFORM dbal.raise_error(403, 'a user and a role are required to record an execution');
    END IF;
    IF v_n > 10000 THEN
        PERFORM dbal.raise_error(422, 'at most 10000 executions per call',
                                 jsonb_build_object('count', v_n));
    END IF;
    IF coalesce(cardinality(p_statuses), 0) <> v_n OR coalesce(cardinality(p_durations), 0) <> v_n
       OR coalesce(cardinality(p_execution_ids), 0) <> v_n OR coalesce(cardinality(p_tokens), 0) <> v_n
       OR coalesce(cardinality(p_started_at), 0) <> v_n OR coalesce(cardinality(p_errors), 0) <> v_n THEN
        PERFORM dbal.raise_error(422, 'the arrays of a batch must have the same length');
    END IF;
    PERFORM 1 FROM dbal.workflows w
     WHERE w.tenant_id = v_tenant AND w.id = ANY (p_workflows)
     ORDER BY w.id
       FOR UPDATE;
    FOR i IN 1 .. v_n LOOP
        r := dbal.record_one(v_tenant, p_workflows[i], p_statuses[i], p_durations[i],
                             p_execution_ids[i], p_tokens[i], p_started_at[i], p_errors[i]);
        ord := i;
        execution_id := r.o_execution_id;
        outcome := r.o_outcome;
        code := r.o_code;
        message := r.o_message;
        details := r.o_details;
        RETURN NEXT;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION dbal.record_executions(text, text, text, uuid[], text[],
    double precision[], text[], bigint[], timestamptz[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dbal.record_executions(text, text, text, uuid[], text[],
    double precision[], text[], bigint[], timestamptz[], text[]) TO @app_role@;

RESET ROLE;
