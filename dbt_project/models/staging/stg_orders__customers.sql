{{
    config(
        materialized='incremental',
        unique_key='orders_customer_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['orders_customer_id'], 'unique': true},
            {'columns': ['loaded_at']},
            {'columns': ['staged_at']},
        ],
        post_hook=[
            "{{ delete_keys_without_loaded_versions(source('orders', 'customers'),
                [['orders_customer_id', 'customer_id']]) }}",
        ],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the customers touched since the
-- last run, each from all of its loaded raw versions, so the result equals a full build.

with

source as (

    {{ loaded_versions_of_touched_keys(source('orders', 'customers'), ['customer_id']) }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by customer_id
            order by updated_at desc nulls last, _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where customer_id is not null

),

final as (

    select
        -- ids
        customer_id as orders_customer_id,
        'orders' as source_system,
        cast(customer_id as text) as source_record_id,

        -- canonical customer fields
        {{ normalized_customer_fields(has_full_name=false, has_address_details=false) }},

        -- timestamps
        created_at,
        updated_at,
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where version_number = 1

)

select * from final
