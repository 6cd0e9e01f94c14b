{{
    config(
        tags=['identity_input'],
        indexes=[
            {'columns': ['source_system', 'source_record_id']},
        ],
    )
}}

-- The declared identifier kinds (config/identity.yml `identifiers`: passport, loyalty card, a foreign
-- national id, ...) of every customer record, one row per record and kind: the long form of the
-- `identifiers` jsonb the loader fills from the columns a source maps onto a kind. Values stay as received
-- (trimmed); identity resolution normalises and validates them per kind, as the config says.

with

customer_records as (

    select * from {{ ref('int_customer_records_unioned') }}

),

unnested as (

    select
        customer_records.source_system,
        customer_records.source_record_id,
        identifier.key as identifier_kind,
        btrim(identifier.value) as identifier_value
    from customer_records
    cross join lateral jsonb_each_text(customer_records.identifiers) as identifier
    where customer_records.identifiers is not null

),

final as (

    select
        source_system,
        source_record_id,
        identifier_kind,
        identifier_value
    from unnested
    where identifier_value <> ''

)

select * from final
