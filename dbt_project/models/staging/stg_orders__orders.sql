{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['order_id'], 'unique': true},
            {'columns': ['loaded_at']},
            {'columns': ['staged_at']},
        ],
        post_hook=[
            "{{ delete_keys_without_loaded_versions(source('orders', 'orders'), [['order_id', 'order_id']]) }}",
            "{{ delete_keys_deleted_at_source(source('orders', 'orders'), 'order_id', 'order_id') }}",
        ],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the orders touched since the last
-- run, each from all of its loaded raw versions, so the result equals a full build.

with

source as (

    {{ loaded_versions_of_touched_keys(source('orders', 'orders'), ['order_id']) }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by order_id
            order by updated_at desc nulls last, _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where order_id is not null

),

final as (

    select
        -- ids
        order_id,
        customer_id as orders_customer_id,

        -- order
        lower(btrim(status)) as status,
        lower(btrim(channel)) as channel,
        total_amount,
        coalesce(upper(btrim(currency)), 'IRR') as currency,

        -- timestamps
        ordered_at,
        updated_at,
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where
        version_number = 1
        -- deleted at the source (soft-delete column or key reconciliation): no longer counts
        and _deleted_at_source is not true

)

select * from final
