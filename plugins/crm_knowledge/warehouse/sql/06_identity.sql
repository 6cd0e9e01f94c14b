-- Identity resolution schema (docs/data_contracts.md, "Identity resolution"). Idempotent. No PII:
-- record keys, customer ids, rule names, scores and keyed pseudonyms (HMAC-SHA-256, privacy.pseudonym) of junk identifier values only.

create schema if not exists identity;

create table if not exists identity.record_clusters (
    source_system     text not null,
    source_record_id  text not null,
    customer_id       text not null,
    match_rule        text not null,   -- national_id | customer_ref | email | phone | probabilistic | singleton
    match_score       double precision,
    resolved_at       timestamptz not null default now(),
    primary key (source_system, source_record_id)
);
create index if not exists record_clusters_customer_id_idx on identity.record_clusters (customer_id);

create table if not exists identity.match_pairs (
    source_system_l     text not null,
    source_record_id_l  text not null,
    source_system_r     text not null,
    source_record_id_r  text not null,
    match_rule          text not null,
    match_probability   double precision,
    match_weight        double precision,
    explanation         jsonb
);
create index if not exists match_pairs_l_idx on identity.match_pairs (source_system_l, source_record_id_l);
create index if not exists match_pairs_r_idx on identity.match_pairs (source_system_r, source_record_id_r);

create table if not exists identity.customer_id_merges (
    old_customer_id  text not null,
    new_customer_id  text not null,
    merged_at        timestamptz not null default now()
);
create index if not exists customer_id_merges_old_idx on identity.customer_id_merges (old_customer_id);

-- One row per identity-resolution run: what operators read, and how the daily DAG knows whether the week's
-- full resolution already ran today (identity.store.decide_mode). No customer data.
create table if not exists identity.resolution_runs (
    resolved_at    timestamptz not null default now(),
    run_day        date not null,   -- the pipeline day the run belongs to (its logical date)
    mode           text not null check (mode in ('full', 'incremental')),
    records        integer not null,
    new_records    integer not null,
    customers      integer not null,
    seconds        double precision not null
);
create index if not exists resolution_runs_mode_day on identity.resolution_runs (mode, run_day);

-- The highest customer id number ever issued, per id prefix. An id must never be given to another person,
-- even after every record holding it is gone (erased, or deleted at the source) and has left
-- record_clusters and customer_id_merges; this row remembers it. Holds no customer data.
create table if not exists identity.issued_ids (
    id_prefix       text primary key,
    highest_number  bigint not null,
    updated_at      timestamptz not null default now()
);

create table if not exists identity.unresolved (
    source_system     text not null,
    source_record_id  text not null,
    reason            text not null,
    seen_at           timestamptz,
    primary key (source_system, source_record_id)
);

create table if not exists identity.junk_values (
    identifier_kind        text not null,   -- email | phone | national_id
    identifier_value_hash  text not null,   -- keyed pseudonym "<kind>:<hex HMAC-SHA-256>" of the normalised value (privacy.pseudonym)
    distinct_records       integer not null,
    detected_at            timestamptz not null default now(),
    primary key (identifier_kind, identifier_value_hash)
);
