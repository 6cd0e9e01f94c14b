-- Audit layer: what came in, what was checked, what was done. Holds no PII (auditors read it).
create schema if not exists audit;

create table if not exists audit.load_batches (
    batch_id text primary key,
    source_name text not null,
    source_kind text not null,
    source_file text,
    window_start timestamptz,
    window_end timestamptz,
    checksum text,
    rows_read bigint not null default 0,
    rows_loaded bigint not null default 0,
    rows_rejected bigint not null default 0,
    -- rows a database extract re-read inside its look-back window and already held, unchanged
    rows_duplicate bigint not null default 0,
    -- retired: a held batch an operator set aside (`ckp batches retire`), e.g. because a corrected re-delivery
    -- replaced it; never re-checked, never staged, kept for the record
    -- aborted: left `running` by a load that crashed (process or warehouse killed); its rows were rolled back,
    -- and the next load of the source marked it (finished_at, error say when and why) and loaded the data again
    status text not null constraint load_batches_status_check
        check (status in ('running', 'loaded', 'quarantined', 'failed', 'held', 'retired', 'aborted')),
    error text,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    -- loaded rows that had an optional field set to NULL because its value did not convert (audit.field_issues)
    rows_field_issues bigint not null default 0,
    -- set when the loader itself held the batch (too many field issues): the quality gate does not release it
    load_hold_reason text,
    constraint rows_accounted check (status <> 'loaded' or rows_read = rows_loaded + rows_rejected + rows_duplicate)
);
-- Added after release: field issues per batch, and holds decided at load.
alter table audit.load_batches add column if not exists rows_field_issues bigint not null default 0;
alter table audit.load_batches add column if not exists load_hold_reason text;
-- The same content is loaded at most once per source.
create unique index if not exists load_batches_once
    on audit.load_batches (source_name, checksum) where status = 'loaded';
create index if not exists load_batches_source on audit.load_batches (source_name, started_at);
-- Added after release: the `retired` and `aborted` statuses (existing tables keep the original check until
-- this runs).
alter table audit.load_batches drop constraint if exists load_batches_status_check;
alter table audit.load_batches add constraint load_batches_status_check
    check (status in ('running', 'loaded', 'quarantined', 'failed', 'held', 'retired', 'aborted'));
create index if not exists load_batches_running on audit.load_batches (source_name) where status = 'running';

create table if not exists audit.watermarks (
    source_name text not null,
    table_name text not null,
    high_watermark timestamptz,
    updated_at timestamptz not null default now(),
    primary key (source_name, table_name)
);

create table if not exists audit.schema_drift (
    batch_id text not null,
    source_name text not null,
    source_file text,
    missing_columns text[] not null default '{}',
    unexpected_columns text[] not null default '{}',
    detected_at timestamptz not null default now()
);

-- One row per field of a loaded record whose value did not convert: the field was loaded as NULL and the record
-- kept (sources with `invalid_optional_field: null`). Names the place and the problem, never the value (auditors
-- read it; the value is in the archived file).
create table if not exists audit.field_issues (
    batch_id text not null,
    source_name text not null,
    source_file text,
    row_number int not null,
    column_name text not null,
    source_column text not null,
    reason text not null,
    detected_at timestamptz not null default now()
);
create index if not exists field_issues_batch on audit.field_issues (batch_id);

-- How a batch's text is to be read (ingest/files.py writes one row per file batch, in the load's transaction):
-- its source's calendar and date format, and raw column -> file column for the field-issue report. Staging
-- and the field-issue check (ingest/field_issues.py) read dates through it; a batch without a row (loaded
-- before raw held text: ISO Gregorian values) reads as Gregorian ISO.
create table if not exists audit.batch_conventions (
    batch_id text primary key,
    source_name text not null,
    date_calendar text not null default 'gregorian',
    date_format text,
    -- the source's field_issue_threshold when the batch loaded
    field_issue_threshold numeric not null default 0.05,
    source_columns jsonb not null default '{}',
    -- when ingest/field_issues.py recorded the batch's field issues (NULL: not yet)
    field_issues_checked_at timestamptz
);

-- One row per warehouse DAG run (crm_knowledge.run_mode): when it began, in which mode, from when its
-- checks and customer models counted changes, and when its marts quality gate passed. A daily run counts
-- changes from the start of the earliest run since the last one that passed, so the rows a failed run wrote
-- are recomputed and checked again by the next run rather than left stale or unchecked. No customer data.
create table if not exists audit.warehouse_runs (
    started_at    timestamptz primary key,
    run_day       date not null,
    mode          text not null check (mode in ('full', 'incremental')),
    changes_since timestamptz,  -- null on a full run: everything counts as changed
    completed_at  timestamptz
);
-- when a scoring run's post-scoring models (customer_segments, the 360) had picked up this completed run's
-- changes (its post-scoring quality gate passed); the next scoring run counts from the earliest run not yet
-- picked up
alter table audit.warehouse_runs add column if not exists post_scoring_at timestamptz;
