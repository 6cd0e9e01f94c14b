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
    constraint rows_accounted check (status <> 'loaded' or rows_read = rows_loaded + rows_rejected + rows_duplicate)
);
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
