-- The customer read service (crm_knowledge.serve, `ckp serve`): who may call it, and who looked up whom.
-- Holds no personal data: keys are stored as SHA-256 hashes of their secret, requests name the customer by
-- its pseudonymous customer_id and the fields returned, never their values.

-- One row per API key (`ckp api-keys create`). The secret is shown once and never stored.
create table if not exists audit.api_keys (
    key_id                text primary key,            -- public part of the key: ckp_<key_id>_<secret>
    secret_sha256         text not null,               -- hex SHA-256 of the secret part
    name                  text not null,               -- who holds it (a system, a team), no personal data
    role                  text not null check (role in ('agent', 'partner')),
    unit                  text,                        -- partner: its own source system (e.g. sibling:bank_fa)
    rate_limit_per_minute integer check (rate_limit_per_minute > 0),  -- null: CKP_SERVE_RATE_LIMIT
    created_at            timestamptz not null default now(),
    revoked_at            timestamptz
);

-- Every request the service answered (also denials): who, which endpoint, which customer(s), which fields.
create table if not exists audit.api_requests (
    request_id    bigint generated always as identity primary key,
    requested_at  timestamptz not null default now(),
    key_id        text,                                -- null: no or an unknown key
    role          text,
    method        text not null,
    endpoint      text not null,                       -- the route template, e.g. /customers/{customer_id}
    status        integer not null,
    customer_ids  text[] not null default '{}',        -- customers whose data was returned or written
    fields        text[] not null default '{}',        -- names of the personal-data fields returned
    duration_ms   numeric(10, 2)
);
create index if not exists api_requests_key_time on audit.api_requests (key_id, requested_at);
create index if not exists api_requests_customer on audit.api_requests using gin (customer_ids);
