-- Steps of one journey no longer deadlock one another (docs/reliability.md): two steps
-- written at once could lock the journey's shared rows crosswise, one a stage's row in
-- `stage_stats` and then the journey's counters (an exit: the counters, then the stage it
-- left), Postgres aborting one of them. nurture_record_steps now locks the rows it will
-- move in `stage_stats`, then in `stage_paths`, each in key order, before anything else;
-- `journey_counters` (moved by the enrollments' trigger) always comes after them. Rows that
-- do not exist yet (a stage's first entry) are inserted as before. Nothing else changes.
CREATE OR REPLACE FUNCTION nurture_record_steps(
    p_workflow_id text, p_workspace text, p_journey_id text, p_contact_id text, p_records jsonb,
    OUT steps int[], OUT sent_marketing boolean, OUT ended_as text, OUT writes jsonb
) LANGUAGE plpgsql AS $fn$
DECLARE
    r jsonb;
    e jsonb;
    inserted int;
    done int[] := '{}';
    v_at timestamptz;
    v_from text;
    v_to text;
    v_seq bigint;
    v_wrote bigint;
    v_refused text[];
    v_writes jsonb := '{}';
    v_convert_at timestamptz;
    v_counted int;
    v_list text;
BEGIN
    -- the journey's shared rows first, each table in key order (see above)
    PERFORM 1 FROM stage_stats s
    WHERE s.workspace = p_workspace AND s.journey_id = p_journey_id
      AND s.stage IN (
          SELECT x.stage
          FROM jsonb_array_elements(p_records) AS rec(value),
               jsonb_array_elements(coalesce(rec.value->'effects', '[]')) AS eff(value),
               LATERAL (VALUES (eff.value->>'stage'), (eff.value->>'from_stage')) AS x(stage)
          WHERE eff.value->>'kind' IN ('enter_stage', 'end_enrollment')
      )
    ORDER BY s.stage
    FOR UPDATE;
    PERFORM 1 FROM stage_paths p
    WHERE p.workspace = p_workspace AND p.journey_id = p_journey_id
      AND (p.from_stage, p.to_node) IN (
          SELECT CASE WHEN eff.value->>'kind' = 'take_path' THEN rec.value->>'stage'
                      ELSE eff.value->>'from_stage' END,
                 CASE eff.value->>'kind' WHEN 'take_path' THEN eff.value->>'node'
                                         WHEN 'enter_stage' THEN eff.value->>'stage'
                                         ELSE eff.value->>'to_node' END
          FROM jsonb_array_elements(p_records) AS rec(value),
               jsonb_array_elements(coalesce(rec.value->'effects', '[]')) AS eff(value)
          WHERE eff.value->>'kind' IN ('enter_stage', 'end_enrollment', 'take_path')
      )
    ORDER BY p.from_stage, p.to_node
    FOR UPDATE;
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
        v_seq := NULL;
        v_refused := NULL;
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
            WHEN 'write_property' THEN
                IF coalesce((e->>'conditional')::boolean, false) THEN
                    -- contacts_store.WRITE_PROPERTY_IF: refused (no row) when a caller moved it
                    v_wrote := NULL;
                    INSERT INTO contacts AS c (workspace, id, properties)
                    VALUES (p_workspace, p_contact_id, jsonb_build_object(e->>'property', e->'value'))
                    ON CONFLICT (workspace, id) DO UPDATE
                    SET properties = c.properties || jsonb_build_object(e->>'property', e->'value'),
                        seq = nextval('change_seq'), updated_at = now()
                    WHERE c.properties -> (e->>'property')
                              IS NOT DISTINCT FROM nullif(e->'expected', 'null'::jsonb)
                       OR c.properties -> (e->>'property') = e->'value'
                    RETURNING seq INTO v_wrote;
                    v_refused := array_remove(coalesce(v_refused, '{}'), e->>'property');
                    IF v_wrote IS NULL THEN
                        v_refused := v_refused || (e->>'property');
                    ELSE
                        v_seq := v_wrote;
                    END IF;
                END IF;
            WHEN 'convert' THEN
                IF NOT coalesce((e->>'after_end')::boolean, false)
                   AND NOT coalesce((e->>'experiments')::boolean, false) THEN
                    v_convert_at := v_at;  -- counted below, on the row as all records left it
                END IF;
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
        IF v_refused IS NOT NULL THEN
            UPDATE enrollment_steps SET contact_seq = v_seq, refused_writes = v_refused
            WHERE workflow_id = p_workflow_id AND step_seq = inserted;
            v_writes := v_writes || jsonb_build_object(
                inserted::text, jsonb_build_object('seq', v_seq, 'refused', to_jsonb(v_refused)));
        END IF;
    END LOOP;
    steps := done;
    writes := v_writes;
    SELECT en.marketing_sent, en.outcome INTO sent_marketing, ended_as
    FROM enrollments en WHERE en.workflow_id = p_workflow_id;
    IF v_convert_at IS NOT NULL AND sent_marketing
       AND ended_as IS DISTINCT FROM 'suppressed' AND ended_as IS DISTINCT FROM 'holdout' THEN
        INSERT INTO conversions (workspace, journey_id, contact_id, goal_epoch, converted_at)
        SELECT p_workspace, p_journey_id, p_contact_id, en.goal_epoch, v_convert_at
        FROM enrollments en WHERE en.workflow_id = p_workflow_id
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS v_counted = ROW_COUNT;
        IF v_counted = 1 THEN
            SELECT v.definition -> 'goal' ->> 'add_to_list' INTO v_list
            FROM enrollments en
            JOIN journey_versions v ON v.workspace = en.workspace
                AND v.journey_id = en.journey_id AND v.version = en.journey_version
            WHERE en.workflow_id = p_workflow_id;
            IF v_list IS NOT NULL THEN
                -- contacts_store.join_list
                INSERT INTO list_members (workspace, list, contact_id)
                VALUES (p_workspace, v_list, p_contact_id) ON CONFLICT DO NOTHING;
                INSERT INTO contacts AS c (workspace, id) VALUES (p_workspace, p_contact_id)
                ON CONFLICT (workspace, id)
                DO UPDATE SET seq = nextval('change_seq'), updated_at = now();
            END IF;
        END IF;
    END IF;
END
$fn$;
