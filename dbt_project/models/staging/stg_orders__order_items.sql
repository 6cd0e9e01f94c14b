{{
    config(
        materialized='incremental',
        unique_key='order_item_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['order_item_id'], 'unique': true},
            {'columns': ['order_id']},
            {'columns': ['loaded_at']},
            {'columns': ['staged_at']},
        ],
        post_hook=[
            "{{ delete_keys_without_loaded_versions(source('orders', 'order_items'),
                [['order_item_id', 'order_item_id']]) }}",
            "{{ delete_keys_deleted_at_source(source('orders', 'order_items'),
                'order_item_id', 'order_item_id') }}",
        ],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the lines touched since the last
-- run, each from all of its loaded raw versions, so the result equals a full build.

with

source as (

    {{ loaded_versions_of_touched_keys(source('orders', 'order_items'), ['order_item_id']) }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by order_item_id
            order by updated_at desc nulls last, _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where order_item_id is not null

),

final as (

    select
        -- ids
        order_item_id,
        order_id,
        product_id,

        -- line
        quantity,
        unit_price,
        coalesce(line_amount, quantity * unit_price) as line_amount,

        -- timestamps
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
