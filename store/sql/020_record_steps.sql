-- An enrollment's log records and the read models they move, in one call (docs/performance.md,
-- "CPU per unit of work"): each record is inserted once, keyed (workflow_id, step_seq), and
-- only a record inserted now moves the enrollment row, the stage counters, the paths and the
-- dated stage moves. Effects of other kinds (property writes, lists, conversions, experiment
-- draws) are the caller's. Returns the step numbers inserted by this call, and what then
-- decides whether a goal met counts: the enrollment's `marketing_sent` and `outcome`.
CREATE OR REPLACE FUNCTION nurture_record_steps(
    p_workflow_id text, p_workspace text, p_journey_id text, p_contact_id text, p_records jsonb,
    OUT steps int[], OUT sent_marketing boolean, OUT ended_as text
) LANGUAGE plpgsql AS $fn$
DECLARE
    r jsonb;
    e jsonb;
    inserted int;
    done int[] := '{}';
    v_at timestamptz;
    v_from text;
    v_to text;
BEGIN
    FOR r IN SELECT value FROM jsonb_array_elements(p_records) LOOP
        v_at := (r->>'at')::timestamptz;
        INSERT INTO enrollment_steps (workflow_id, step_seq, workspace, journey_id, contact_id,
                                      at, stage, action, result, detail)
        VALUES (p_workflow_id, (r->>'step_seq')::int, p_workspace, p_journey_id, p_contact_id,
                v_at, r->>'stage', r->>'action', r->>'result', coalesce(r->'detail', '{}'))
        ON CONFLICT (workflow_id, step_seq) DO NOTHING
        RETURNING step_seq INTO inserted;
        CONTINUE WHEN inserted IS NULL;
        done := done || inserted;
        FOR e IN SELECT value FROM jsonb_array_elements(coalesce(r->'effects', '[]')) LOOP
            v_from := NULL;
            v_to := NULL;
            CASE e->>'kind'
            WHEN 'enter_stage' THEN
                v_from := e->>'from_stage';
                v_to := e->>'stage';
                UPDATE enrollments SET stage = v_to WHERE workflow_id = p_workflow_id;
                INSERT INTO stage_stats AS s (workspace, journey_id, stage, entered, active)
                VALUES (p_workspace, p_journey_id, v_to, 1, 1)
                ON CONFLICT (workspace, journey_id, stage)
                DO UPDATE SET entered = s.entered + 1, active = s.active + 1;
            WHEN 'end_enrollment' THEN
                v_from := e->>'from_stage';
                v_to := e->>'to_node';
                UPDATE enrollments
                SET outcome = e->>'outcome', end_value = e->>'end_value', status = e->>'status',
                    ended_at = v_at, goal_met_seq = (e->>'goal_met_seq')::bigint,
                    completed_at = CASE WHEN e->>'status' = 'completed' THEN v_at
                                        ELSE completed_at END
                WHERE workflow_id = p_workflow_id;
            WHEN 'complete' THEN
                UPDATE enrollments SET status = 'completed', completed_at = v_at
                WHERE workflow_id = p_workflow_id;
            WHEN 'take_path' THEN
                -- a branch path or split variant: a path from the stage, not a stage change
                INSERT INTO stage_paths AS p (workspace, journey_id, from_stage, to_node, count)
                VALUES (p_workspace, p_journey_id, r->>'stage', e->>'node', 1)
                ON CONFLICT (workspace, journey_id, from_stage, to_node)
                DO UPDATE SET count = p.count + 1;
                INSERT INTO stage_moves (workspace, journey_id, enrolled_at, at, from_stage, to_node)
                SELECT workspace, journey_id, enrolled_at, v_at, r->>'stage', e->>'node'
                FROM enrollments WHERE workflow_id = p_workflow_id;
            ELSE
                NULL;
            END CASE;
            IF v_to IS NOT NULL AND (e->>'kind' = 'enter_stage' OR v_from IS NOT NULL) THEN
                INSERT INTO stage_moves (workspace, journey_id, enrolled_at, at, from_stage, to_node)
                SELECT workspace, journey_id, enrolled_at, v_at, v_from, v_to
                FROM enrollments WHERE workflow_id = p_workflow_id;
            END IF;
            IF v_from IS NOT NULL THEN
                UPDATE stage_stats SET active = active - 1
                WHERE workspace = p_workspace AND journey_id = p_journey_id AND stage = v_from;
                INSERT INTO stage_paths AS p (workspace, journey_id, from_stage, to_node, count)
                VALUES (p_workspace, p_journey_id, v_from, v_to, 1)
                ON CONFLICT (workspace, journey_id, from_stage, to_node)
                DO UPDATE SET count = p.count + 1;
            END IF;
        END LOOP;
    END LOOP;
    steps := done;
    SELECT en.marketing_sent, en.outcome INTO sent_marketing, ended_as
    FROM enrollments en WHERE en.workflow_id = p_workflow_id;
END
$fn$;
