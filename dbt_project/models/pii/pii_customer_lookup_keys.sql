{{
    affected_customers_config(
        indexes=[
            {'columns': ['key_hash']},
            {'columns': ['customer_id']},
        ],
        changes=record_changes() + ['forms'],
    )
}}

-- The read service's lookup index (crm_knowledge.serve.lookup): every normalised identifier a customer's
-- source records carried, keyed by sha256('<kind>:<normalised value>') so a lookup is one index probe on a
-- hash, never a scan of the vault. Kinds: email, phone (E.164), national_id (valid only) and name_birth
-- (matching form of the full name, '|', ISO birth date). Customers who asked to be forgotten are left out
-- (pii_source_identities has none of their records). Restricted schema.
-- Incremental: a daily run recomputes only the customers whose records changed or who asked to be
-- forgotten (record_changes() and forms, macros/affected_customers.sql).

with

source_identities as (

    select * from {{ ref('pii_source_identities') }}
    {{ only_affected_customers(changes=record_changes() + ['forms']) }}

),

identifiers as (

    -- one pass over the records: each record's identifiers side by side, one row per identifier it carries
    select
        source_identities.customer_id,
        carried.identifier_kind,
        carried.identifier_value,
        source_identities.seen_at
    from source_identities
    cross join
        lateral (
            values
            ('email', source_identities.email_norm),
            ('phone', source_identities.phone_e164),
            ('national_id', source_identities.national_id_valid),
            (
                'name_birth',
                source_identities.full_name_norm || '|' || to_char(source_identities.birth_date, 'YYYY-MM-DD')
            )
        ) as carried (identifier_kind, identifier_value)
    where carried.identifier_value is not null

),

per_customer as (

    select
        identifier_kind,
        identifier_value,
        customer_id,
        count(*) as source_record_count,
        max(seen_at) as last_seen_at
    from identifiers
    group by identifier_kind, identifier_value, customer_id

),

final as (

    -- hashed once per customer and identifier, not once per record
    select
        encode(sha256(convert_to(identifier_kind || ':' || identifier_value, 'UTF8')), 'hex') as key_hash,
        identifier_kind,
        customer_id,
        source_record_count,
        last_seen_at
    from per_customer

)

select * from final
