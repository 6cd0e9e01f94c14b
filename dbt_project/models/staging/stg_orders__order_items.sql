{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [['order_item_id', 'order_item_id']] -%}

{{
    config(
        materialized='incremental',
        unique_key=staging_unique_key(record_key),
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': staging_key_columns(record_key), 'unique': true},
            {'columns': ['order_id']},
            {'columns': ['loaded_at']},
            {'columns': ['staged_at']},
        ],
        post_hook=[staging_delete_hook('orders', 'order_items', record_key)],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the lines touched since the last
-- run, each from all of its loaded raw versions, so the result equals a full build.

with

source as (

    {{ loaded_versions_of_touched_keys(source('orders', 'order_items'), record_key) }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by {{ raw_key_expressions(record_key) }}
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
    where version_number = 1

)

select * from final
