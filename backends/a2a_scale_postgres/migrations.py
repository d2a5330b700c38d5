"""The versioned migrations of the PostgreSQL backend's tables.

Migrations are numbered and applied in order by
`a2a_scale_postgres.schema.migrate`; ``{schema}`` in their SQL is the quoted
schema of the namespace.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """One schema change: ``{schema}`` in `sql` is the quoted schema."""

    version: int
    name: str
    sql: str


_V1 = r"""
CREATE TABLE {schema}.tasks (
    id text COLLATE "C" PRIMARY KEY,
    owner text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    state integer NOT NULL,
    context_id text COLLATE "C" NOT NULL,
    has_ts boolean NOT NULL,
    ts_ns bigint NOT NULL,
    terminal boolean NOT NULL,
    data bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX tasks_owner_order ON {schema}.tasks (owner, has_ts, ts_ns, id);
CREATE INDEX tasks_owner_context_order
    ON {schema}.tasks (owner, context_id, has_ts, ts_ns, id);
CREATE INDEX tasks_owner_state_order
    ON {schema}.tasks (owner, state, has_ts, ts_ns, id);
CREATE INDEX tasks_finished ON {schema}.tasks (finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE {schema}.streams (
    task_id text COLLATE "C" PRIMARY KEY,
    last_seq bigint NOT NULL,
    trimmed_seq bigint NOT NULL DEFAULT 0,
    trimmed_version bigint NOT NULL DEFAULT -1,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX streams_updated ON {schema}.streams (updated_at);

CREATE TABLE {schema}.events (
    task_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    version bigint NOT NULL,
    data bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, seq)
);

CREATE TABLE {schema}.push_configs (
    task_id text COLLATE "C" NOT NULL,
    owner text COLLATE "C" NOT NULL,
    config_id text COLLATE "C" NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (task_id, owner, config_id)
);

CREATE TABLE {schema}.replicas (
    instance_id text PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Appends an event to a task's log and rings the namespace channel with the
-- task's key and the event's position. The streams row lock orders the log.
CREATE FUNCTION {schema}.append_event(
    p_id text, p_version bigint, p_event bytea, p_channel text, p_max integer
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    v_seq bigint;
    v_cut bigint;
BEGIN
    INSERT INTO {schema}.streams AS s (task_id, last_seq) VALUES (p_id, 1)
        ON CONFLICT (task_id) DO UPDATE
        SET last_seq = s.last_seq + 1, updated_at = now()
        RETURNING last_seq INTO v_seq;
    INSERT INTO {schema}.events (task_id, seq, version, data)
        VALUES (p_id, v_seq, p_version, p_event);
    -- Trim in steps of a tenth of the cap, so most saves delete nothing.
    v_cut := v_seq - p_max;
    IF v_cut > 0 AND v_cut % GREATEST(p_max / 10, 1) = 0 THEN
        UPDATE {schema}.streams SET trimmed_seq = v_cut,
            trimmed_version = COALESCE((SELECT version FROM {schema}.events
                WHERE task_id = p_id AND seq = v_cut), trimmed_version)
            WHERE task_id = p_id;
        DELETE FROM {schema}.events WHERE task_id = p_id AND seq <= v_cut;
    END IF;
    PERFORM pg_notify(p_channel, md5(p_id) || ':' || v_seq);
    RETURN v_seq;
END
$fn$;

-- One save: owner check, compare-and-set (CANCELED overrides any
-- non-terminal task), task write, event append and notification.
-- Returns the new version, or -1 on a conflict (of any kind).
CREATE FUNCTION {schema}.save_task(
    p_id text, p_owner text, p_prev bigint, p_cancel boolean, p_state integer,
    p_terminal boolean, p_context text, p_has_ts boolean, p_ts bigint,
    p_data bytea, p_event bytea, p_channel text, p_max integer
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    v_owner text;
    v_version bigint;
    v_terminal boolean;
BEGIN
    SELECT owner, version, terminal INTO v_owner, v_version, v_terminal
        FROM {schema}.tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        IF p_cancel OR p_prev <> 0 THEN
            RETURN -1;
        END IF;
        INSERT INTO {schema}.tasks (id, owner, version, state, context_id, has_ts,
                ts_ns, terminal, data, finished_at)
            VALUES (p_id, p_owner, 1, p_state, p_context, p_has_ts, p_ts,
                p_terminal, p_data, CASE WHEN p_terminal THEN now() END)
            ON CONFLICT (id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN -1;
        END IF;
        v_version := 1;
    ELSE
        IF v_owner <> p_owner THEN
            RETURN -1;
        END IF;
        IF p_cancel THEN
            IF v_terminal THEN
                RETURN -1;
            END IF;
        ELSIF p_prev = 0 OR v_version <> p_prev THEN
            RETURN -1;
        END IF;
        v_version := v_version + 1;
        UPDATE {schema}.tasks SET version = v_version, state = p_state,
                context_id = p_context, has_ts = p_has_ts, ts_ns = p_ts,
                terminal = p_terminal, data = p_data, updated_at = now(),
                finished_at = CASE WHEN NOT p_terminal THEN NULL
                    ELSE COALESCE(finished_at, now()) END
            WHERE id = p_id;
    END IF;
    IF p_event IS NOT NULL THEN
        PERFORM {schema}.append_event(p_id, v_version, p_event, p_channel, p_max);
    END IF;
    RETURN v_version;
END
$fn$;
"""

# Saves and appends no longer notify inside their transaction (see
# `PostgresTaskStore.save`): a NULL channel skips the notification, and
# ``save_task_v2`` also returns the event's position for the notification
# the replica sends right after the commit.
_V2 = r"""
CREATE OR REPLACE FUNCTION {schema}.append_event(
    p_id text, p_version bigint, p_event bytea, p_channel text, p_max integer
) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    v_seq bigint;
    v_cut bigint;
BEGIN
    INSERT INTO {schema}.streams AS s (task_id, last_seq) VALUES (p_id, 1)
        ON CONFLICT (task_id) DO UPDATE
        SET last_seq = s.last_seq + 1, updated_at = now()
        RETURNING last_seq INTO v_seq;
    INSERT INTO {schema}.events (task_id, seq, version, data)
        VALUES (p_id, v_seq, p_version, p_event);
    v_cut := v_seq - p_max;
    IF v_cut > 0 AND v_cut % GREATEST(p_max / 10, 1) = 0 THEN
        UPDATE {schema}.streams SET trimmed_seq = v_cut,
            trimmed_version = COALESCE((SELECT version FROM {schema}.events
                WHERE task_id = p_id AND seq = v_cut), trimmed_version)
            WHERE task_id = p_id;
        DELETE FROM {schema}.events WHERE task_id = p_id AND seq <= v_cut;
    END IF;
    IF p_channel IS NOT NULL THEN
        PERFORM pg_notify(p_channel, md5(p_id) || ':' || v_seq);
    END IF;
    RETURN v_seq;
END
$fn$;

-- Like save_task, without a notification: returns {version, position of
-- the event (0 if none)}, or {-1, 0} on a conflict.
CREATE FUNCTION {schema}.save_task_v2(
    p_id text, p_owner text, p_prev bigint, p_cancel boolean, p_state integer,
    p_terminal boolean, p_context text, p_has_ts boolean, p_ts bigint,
    p_data bytea, p_event bytea, p_max integer
) RETURNS bigint[] LANGUAGE plpgsql AS $fn$
DECLARE
    v_owner text;
    v_version bigint;
    v_terminal boolean;
    v_seq bigint := 0;
BEGIN
    SELECT owner, version, terminal INTO v_owner, v_version, v_terminal
        FROM {schema}.tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        IF p_cancel OR p_prev <> 0 THEN
            RETURN ARRAY[-1, 0];
        END IF;
        INSERT INTO {schema}.tasks (id, owner, version, state, context_id, has_ts,
                ts_ns, terminal, data, finished_at)
            VALUES (p_id, p_owner, 1, p_state, p_context, p_has_ts, p_ts,
                p_terminal, p_data, CASE WHEN p_terminal THEN now() END)
            ON CONFLICT (id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN ARRAY[-1, 0];
        END IF;
        v_version := 1;
    ELSE
        IF v_owner <> p_owner THEN
            RETURN ARRAY[-1, 0];
        END IF;
        IF p_cancel THEN
            IF v_terminal THEN
                RETURN ARRAY[-1, 0];
            END IF;
        ELSIF p_prev = 0 OR v_version <> p_prev THEN
            RETURN ARRAY[-1, 0];
        END IF;
        v_version := v_version + 1;
        UPDATE {schema}.tasks SET version = v_version, state = p_state,
                context_id = p_context, has_ts = p_has_ts, ts_ns = p_ts,
                terminal = p_terminal, data = p_data, updated_at = now(),
                finished_at = CASE WHEN NOT p_terminal THEN NULL
                    ELSE COALESCE(finished_at, now()) END
            WHERE id = p_id;
    END IF;
    IF p_event IS NOT NULL THEN
        v_seq := {schema}.append_event(p_id, v_version, p_event, NULL, p_max);
    END IF;
    RETURN ARRAY[v_version, v_seq];
END
$fn$;
"""

# A terminal state is final: a save at the current version that moves a
# finished task to another state returns {-2, stored state}.
_V3 = r"""
CREATE OR REPLACE FUNCTION {schema}.save_task_v2(
    p_id text, p_owner text, p_prev bigint, p_cancel boolean, p_state integer,
    p_terminal boolean, p_context text, p_has_ts boolean, p_ts bigint,
    p_data bytea, p_event bytea, p_max integer
) RETURNS bigint[] LANGUAGE plpgsql AS $fn$
DECLARE
    v_owner text;
    v_version bigint;
    v_terminal boolean;
    v_state integer;
    v_seq bigint := 0;
BEGIN
    SELECT owner, version, terminal, state
        INTO v_owner, v_version, v_terminal, v_state
        FROM {schema}.tasks WHERE id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        IF p_cancel OR p_prev <> 0 THEN
            RETURN ARRAY[-1, 0];
        END IF;
        INSERT INTO {schema}.tasks (id, owner, version, state, context_id, has_ts,
                ts_ns, terminal, data, finished_at)
            VALUES (p_id, p_owner, 1, p_state, p_context, p_has_ts, p_ts,
                p_terminal, p_data, CASE WHEN p_terminal THEN now() END)
            ON CONFLICT (id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN ARRAY[-1, 0];
        END IF;
        v_version := 1;
    ELSE
        IF v_owner <> p_owner THEN
            RETURN ARRAY[-1, 0];
        END IF;
        IF p_cancel THEN
            IF v_terminal THEN
                RETURN ARRAY[-1, 0];
            END IF;
        ELSIF p_prev = 0 OR v_version <> p_prev THEN
            RETURN ARRAY[-1, 0];
        ELSIF v_terminal AND p_state <> v_state THEN
            RETURN ARRAY[-2, v_state];
        END IF;
        v_version := v_version + 1;
        UPDATE {schema}.tasks SET version = v_version, state = p_state,
                context_id = p_context, has_ts = p_has_ts, ts_ns = p_ts,
                terminal = p_terminal, data = p_data, updated_at = now(),
                finished_at = CASE WHEN NOT p_terminal THEN NULL
                    ELSE COALESCE(finished_at, now()) END
            WHERE id = p_id;
    END IF;
    IF p_event IS NOT NULL THEN
        v_seq := {schema}.append_event(p_id, v_version, p_event, NULL, p_max);
    END IF;
    RETURN ARRAY[v_version, v_seq];
END
$fn$;
"""

# Which replica runs which task, for crash recovery. `claimed_by` marks a
# record a claim took and has not yet acknowledged (see
# `a2a_scale_postgres.running`).
_V4 = r"""
CREATE TABLE {schema}.running_tasks (
    task_id text COLLATE "C" PRIMARY KEY,
    owner text COLLATE "C" NOT NULL,
    instance_id text COLLATE "C" NOT NULL,
    resumes integer NOT NULL DEFAULT 0,
    claimed_by text COLLATE "C",
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX running_tasks_instance ON {schema}.running_tasks (instance_id);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, 'tasks, events, streams', _V1),
    Migration(2, 'notify after the commit', _V2),
    Migration(3, 'a terminal state is final', _V3),
    Migration(4, 'running tasks', _V4),
)
LATEST = MIGRATIONS[-1].version
