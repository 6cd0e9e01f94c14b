{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [['order_item_id', 'order_item_id']] -%}

{{
    config(
        materialized='incremental',
        unique_key=staging_unique_key(record_key),
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=staging_indexes(record_key, [{'columns': ['order_id']}]),
        post_hook=[
            staging_delete_hook('orders', 'order_items', record_key),
            "{{ delete_keys_deleted_at_source(source('orders', 'order_items'),
                'order_item_id', 'order_item_id') }}",
        ],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the lines touched since the last
-- run, each from all of its loaded raw versions, so the result equals a full build.

with

{{ latest_loaded_versions(source('orders', 'order_items'), record_key, ['updated_at desc nulls last']) }},

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
