-- Data quality: every Great Expectations validation and dbt test result, per pipeline run. No PII:
-- samples of offending rows hold row numbers / keys and masked shapes of values only.
create schema if not exists audit;

-- One row per suite validated on one batch (raw) or one relation (staging, marts), or per dbt invocation.
create table if not exists audit.dq_runs (
    dq_run_id text primary key,
    pipeline_run_id text not null,
    layer text not null,
    suite text not null,
    batch_id text,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    success boolean,
    critical_failures int not null default 0,
    warnings int not null default 0,
    -- what the gate did with the batch: held | released | passed (raw only)
    action text,
    data_docs_path text
);
-- freshness: `dbt source freshness`, one run per source (crm_knowledge.quality.freshness). Re-created so
-- warehouses made before a layer was added accept it.
alter table audit.dq_runs drop constraint if exists dq_runs_layer_check;
alter table audit.dq_runs add constraint dq_runs_layer_check
    check (layer in ('raw', 'freshness', 'staging', 'marts', 'dbt'));
-- What the checks of a run read, in words for the auditor: `batch <id>` (raw), `whole table` (weekly runs,
-- hand-run gates), `rows written since <time>` / `customers changed since <time>` (daily runs,
-- crm_knowledge.run_mode). Added after the table: warehouses made before it get the column here.
alter table audit.dq_runs add column if not exists scope text;
create index if not exists dq_runs_pipeline_run on audit.dq_runs (pipeline_run_id, layer);
create index if not exists dq_runs_batch on audit.dq_runs (batch_id, started_at);

-- One row per expectation (or dbt test) evaluated in a dq run.
create table if not exists audit.dq_results (
    dq_run_id text not null references audit.dq_runs (dq_run_id) on delete cascade,
    suite text not null,
    expectation text not null,
    column_name text,
    severity text not null check (severity in ('critical', 'warning')),
    success boolean not null,
    observed_value jsonb,
    unexpected_count bigint,
    unexpected_percent double precision,
    -- row numbers / keys of offending rows and the masked shape of their values, never the values
    unexpected_sample jsonb,
    batch_id text,
    expectation_id text,
    description text,
    recorded_at timestamptz not null default now()
);
create index if not exists dq_results_run on audit.dq_results (dq_run_id);
create index if not exists dq_results_failed on audit.dq_results (suite, success) where not success;

-- Measured volume and null rates per suite and scope (a raw batch, or a staging/mart relation per run):
-- the baseline of the volume-anomaly and null-rate tolerance checks. Only accepted scopes (no critical
-- failure) serve as a baseline, so a held batch never becomes the norm.
create table if not exists audit.dq_metric_history (
    suite text not null,
    scope text not null,
    pipeline_run_id text not null,
    metric text not null check (metric in ('row_count', 'null_rate')),
    column_name text not null default '',
    value double precision not null,
    accepted boolean not null,
    recorded_at timestamptz not null default now(),
    primary key (suite, scope, metric, column_name)
);
create index if not exists dq_metric_history_recent on audit.dq_metric_history (suite, metric, column_name, recorded_at desc);

-- One row per dbt model, seed and snapshot and pipeline run: its latest build in that run (the dbt stage
-- tasks run one `dbt build` each; crm_knowledge.quality.gate.record_dbt_node_runs). Messages are masked.
create table if not exists audit.dbt_node_runs (
    pipeline_run_id text not null,
    unique_id text not null,
    resource_type text not null,
    status text not null,
    execution_seconds double precision,
    rows_affected bigint,
    message text,
    invocation_id text,
    recorded_at timestamptz not null default now(),
    primary key (pipeline_run_id, unique_id)
);
