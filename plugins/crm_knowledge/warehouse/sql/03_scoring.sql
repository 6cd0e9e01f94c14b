-- Scoring: the model registry as data, and every customer's scores per as-of date. No PII.
create schema if not exists scoring;

create table if not exists scoring.model_runs (
    model_run_id text primary key,
    model text not null,
    model_version text not null,
    as_of_date date not null,
    training_rows bigint,
    parameters jsonb not null default '{}',
    metrics jsonb not null default '{}',
    artifact_path text,
    artifact_sha256 text,
    code_version text,
    status text not null default 'published' check (status in ('published', 'refused')),
    created_at timestamptz not null default now()
);

-- Why the models were fitted (weekly, due, drift, first, requested) and the fitted models a daily run applies
-- (a file under CKP_HOME/models, checked against its sha256 before it is loaded). Added after the table.
alter table scoring.model_runs add column if not exists fit_reason text;
alter table scoring.model_runs add column if not exists fitted_models_path text;
alter table scoring.model_runs add column if not exists fitted_models_sha256 text;

create table if not exists scoring.customer_scores (
    customer_id text not null,
    as_of_date date not null,
    recency_days int,
    frequency int,
    monetary numeric(18, 2),
    r_score smallint,
    f_score smallint,
    m_score smallint,
    rfm_segment text,
    behaviour_cluster int,
    behaviour_profile text,
    churn_probability double precision,
    expected_purchases double precision,
    p_alive double precision,
    predicted_clv numeric(18, 2),
    value_tier text,
    model_run_ids jsonb not null default '{}',
    scored_at timestamptz not null default now(),
    primary key (customer_id, as_of_date)
);
-- The daily post-scoring models list the customers scored since the run began (int_customers_affected_scored).
create index if not exists customer_scores_scored_at on scoring.customer_scores (scored_at);

create table if not exists scoring.cluster_centroids (
    model_run_id text not null,
    cluster_id int not null,
    centroid jsonb not null,
    size bigint not null,
    profile text,
    primary key (model_run_id, cluster_id)
);

-- Deliveries of segments to destinations (what was sent, when, how many).
create table if not exists audit.exports (
    export_id text primary key,
    destination text not null,
    kind text not null,
    as_of_date date not null,
    rows_added bigint not null default 0,
    rows_changed bigint not null default 0,
    rows_removed bigint not null default 0,
    status text not null check (status in ('running', 'delivered', 'failed')),
    location text,
    checksum text,
    error text,
    started_at timestamptz not null default now(),
    finished_at timestamptz
);

-- Last successfully delivered state per destination and key, so the next delivery is a delta.
create table if not exists scoring.delivered_state (
    destination text not null,
    destination_key text not null,
    customer_id text not null,
    payload_hash text not null,
    payload jsonb not null,
    delivered_at timestamptz not null,
    primary key (destination, destination_key)
);
