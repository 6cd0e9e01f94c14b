-- What a full identity resolution learns about every record, kept for the daily run (identity/daily.py):
-- the prepared blocking keys and comparison columns, and every identifier value, per source record. A daily
-- run prepares only the day's new and changed records and finds their neighbourhood here by index.
-- PERSONAL DATA (name keys, birth dates, postcodes, identifiers): kept in `intermediate`, the locked working
-- layer only ckp_pipeline reads (like intermediate.int_identity_candidates, which it is derived from), not in
-- `identity`, which holds no PII. Erasure deletes a record's rows here by its source key (privacy/purge.py).
-- Idempotent. The indexes on the blocking-rule columns follow config/identity.yml and are created by the
-- identity store (identity.daily.ensure_state_schema).

create schema if not exists intermediate;

create table if not exists intermediate.identity_prepared_records (
    source_system      text not null,
    source_record_id   text not null,
    first_key          text,
    last_key           text,
    first_text         text,
    last_text          text,
    birth_date         text,   -- ISO date
    birth_year         text,
    postcode           text,
    postcode_prefix    text,
    city_key           text,
    street_key         text,
    house_number       text,
    address_line2_key  text,
    is_eligible        boolean not null,   -- enough fields for probabilistic matching (probabilistic.eligible)
    primary key (source_system, source_record_id)
);

-- one row per record and identifier (built-in and declared kinds, normalised as prepared; `customer_ref`:
-- the orders customer a record refers to, or an orders record's own number), junk values included: whether a
-- value is junk is decided per run over everyone carrying it
create table if not exists intermediate.identity_prepared_identifiers (
    source_system     text not null,
    source_record_id  text not null,
    identifier_kind   text not null,
    identifier_value  text not null
);
create index if not exists identity_prepared_identifiers_value_idx
    on intermediate.identity_prepared_identifiers (identifier_kind, identifier_value);
create index if not exists identity_prepared_identifiers_record_idx
    on intermediate.identity_prepared_identifiers (source_system, source_record_id);

-- one row: which configuration prepared the rows above and when resolution last wrote (a daily run takes the
-- candidates staged or seen after `resolved_through`); a changed config/identity.yml makes the next daily run
-- resolve over all records and prepare them again
create table if not exists intermediate.identity_prepared_state (
    singleton         boolean primary key default true check (singleton),
    config_sha256     text not null,
    resolved_through  timestamptz not null,
    prepared_at       timestamptz not null default now()
);
