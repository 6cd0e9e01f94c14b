-- Write-back of segments to destinations (plugins/crm_knowledge/export). No PII in these tables.
create schema if not exists audit;
create schema if not exists scoring;

-- audit.exports (03_scoring.sql) gains what a delivery needs to be retried without duplicates and reviewed:
--   delivery_id   identifies the delta's content: the export_id of the first attempt at this delta; a retry of
--                 the same delta reuses it (webhook Idempotency-Key, file name) so the destination can de-duplicate
--   delta_hash    SHA-256 over (destination, as_of, change type, key, payload hash) of the delta sent
--   attempt       1 for a first attempt, n for the n-th attempt at the same delta
--   named_fields  personal fields (from pii.pii_customer_profiles) this delivery carried, for review
alter table audit.exports add column if not exists delivery_id text;
alter table audit.exports add column if not exists delta_hash text;
alter table audit.exports add column if not exists attempt int not null default 1;
alter table audit.exports add column if not exists purpose text;
alter table audit.exports add column if not exists mode text;
alter table audit.exports add column if not exists id_space text;
alter table audit.exports add column if not exists named_fields text[] not null default '{}';
alter table audit.exports add column if not exists members bigint;
create index if not exists exports_destination on audit.exports (destination, started_at);

-- What each customer was told / offered through a destination: one row per customer, delivery, audience and
-- change. dbt's customer_knowledge reads it as flow = 'for' (kind offer_made | segment_communicated).
create table if not exists scoring.communications (
    export_id text not null,
    destination text not null,
    customer_id text not null,
    audience text,
    change_type text not null check (change_type in ('added', 'changed', 'removed')),
    communicated_at timestamptz not null,
    purpose text,
    -- offer_made: added to / changed in an audience of a marketing destination; else segment_communicated
    kind text not null default 'segment_communicated' check (kind in ('offer_made', 'segment_communicated'))
);
create index if not exists communications_customer on scoring.communications (customer_id, communicated_at);
create index if not exists communications_export on scoring.communications (export_id);
