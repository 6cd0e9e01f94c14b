-- Privacy: the right to be forgotten and customer data reports (plugins/crm_knowledge/privacy/).
-- Idempotent: applied on every bootstrap. No PII in these tables: identifiers appear only as keyed
-- HMAC-SHA-256 pseudonyms (crm_knowledge.privacy.pseudonym), which cannot be reversed or recomputed
-- from a guessed value without CKP_PSEUDONYM_KEY.

create schema if not exists identity;
create schema if not exists audit;

-- What is left of an erased customer: the pseudonyms of the identifiers their records carried and the
-- day they were erased. Identity resolution drops (and purges from raw/staging) any record that
-- carries one of them, so old or re-delivered source files cannot re-create the customer
-- (privacy.tombstones.enforce_tombstones). Pipeline-only schema.
-- identifier_kind: email | phone | national_id | name, or a kind declared in config/identity.yml
-- (passport, loyalty_card, ...: its name, lower-case letters, digits and underscores).
create table if not exists identity.erasure_tombstones (
    identifier_kind  text not null constraint erasure_tombstones_identifier_kind_check
        check (identifier_kind ~ '^[a-z][a-z0-9_]*$'),
    pseudonym        text not null,   -- "<kind>:<64 hex>" (privacy.pseudonym.pseudonymize)
    request_id       text not null,   -- audit.erasure_requests.request_id
    erased_on        date not null,
    primary key (identifier_kind, pseudonym)
);
-- Warehouses created before declared kinds were tombstoned allowed only the four built-in kinds.
do $$
begin
    if exists (select 1 from pg_constraint where conname = 'erasure_tombstones_identifier_kind_check'
               and conrelid = 'identity.erasure_tombstones'::regclass
               and pg_get_constraintdef(oid) like '%ANY%') then
        alter table identity.erasure_tombstones drop constraint erasure_tombstones_identifier_kind_check;
        alter table identity.erasure_tombstones add constraint erasure_tombstones_identifier_kind_check
            check (identifier_kind ~ '^[a-z][a-z0-9_]*$');
    end if;
end
$$;

-- Every erasure request the pipeline completed (or attempted): for auditors. request_id is derived
-- from the pseudonyms of the request's identifiers, so the same request is recognised when repeated.
create table if not exists audit.erasure_requests (
    request_id             text primary key,
    origin                 text not null check (origin in ('cli', 'form', 'file')),
    reason                 text,
    status                 text not null check (status in ('running', 'completed', 'failed', 'no_match')),
    received_at            timestamptz not null default now(),
    customers_erased       integer not null default 0,
    records_erased         integer not null default 0,
    rows_deleted           bigint not null default 0,
    values_masked          bigint not null default 0,
    export_files_redacted  integer not null default 0,
    archive_files_redacted integer not null default 0,  -- landing-archive files rewritten without the rows
    archive_rows_removed   bigint not null default 0,
    quarantine_files_masked integer not null default 0,
    files_not_redacted     integer not null default 0,  -- listed in `error`: the privacy officer acts on them
    removals_sent          jsonb not null default '{}',
    tombstones             integer not null default 0,
    runs                   integer not null default 1,
    error                  text,
    first_completed_at     timestamptz,
    completed_at           timestamptz
);
create index if not exists erasure_requests_status on audit.erasure_requests (status, received_at);
-- Columns added after the table's first release: `create table if not exists` leaves an existing table as it
-- is, so every later column is also added here (idempotent).
alter table audit.erasure_requests
    add column if not exists archive_files_redacted integer not null default 0,
    add column if not exists archive_rows_removed bigint not null default 0,
    add column if not exists quarantine_files_masked integer not null default 0,
    add column if not exists files_not_redacted integer not null default 0;

-- Customer data reports produced for verified access requests (who verified, when, how much); the
-- report itself goes to the requester and is not kept.
create table if not exists audit.customer_data_reports (
    report_id       text primary key,
    verified_by     text not null,
    customers       integer not null,
    sections        jsonb not null default '{}',
    sha256          text,
    created_at      timestamptz not null default now()
);
