{{
    affected_customers_config(indexes=[
        {'columns': ['key_hash']},
        {'columns': ['customer_id']},
    ])
}}

-- The read service's lookup index (crm_knowledge.serve.lookup): every normalised identifier a customer's
-- source records carried, keyed by sha256('<kind>:<normalised value>') so a lookup is one index probe on a
-- hash, never a scan of the vault. Kinds: email, phone (E.164), national_id (valid only) and name_birth
-- (matching form of the full name, '|', ISO birth date). Customers who asked to be forgotten are left out
-- (pii_source_identities has none of their records). Restricted schema.
-- Incremental: a daily run recomputes only the affected customers (macros/affected_customers.sql).

with

source_identities as (

    select * from {{ ref('pii_source_identities') }}
    {{ only_affected_customers() }}

),

identifiers as (

    select
        customer_id,
        'email' as identifier_kind,
        email_norm as identifier_value,
        seen_at
    from source_identities
    where email_norm is not null
    union all
    select
        customer_id,
        'phone' as identifier_kind,
        phone_e164 as identifier_value,
        seen_at
    from source_identities
    where phone_e164 is not null
    union all
    select
        customer_id,
        'national_id' as identifier_kind,
        national_id_valid as identifier_value,
        seen_at
    from source_identities
    where national_id_valid is not null
    union all
    select
        customer_id,
        'name_birth' as identifier_kind,
        full_name_norm || '|' || to_char(birth_date, 'YYYY-MM-DD') as identifier_value,
        seen_at
    from source_identities
    where full_name_norm is not null and birth_date is not null

),

final as (

    select
        encode(sha256(convert_to(identifier_kind || ':' || identifier_value, 'UTF8')), 'hex') as key_hash,
        identifier_kind,
        customer_id,
        count(*) as source_record_count,
        max(seen_at) as last_seen_at
    from identifiers
    group by 1, 2, 3

)

select * from final
