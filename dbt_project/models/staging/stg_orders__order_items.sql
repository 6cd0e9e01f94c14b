{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [['order_item_id', 'order_item_id']] -%}
{{ incremental_staging_config(
    'orders', 'order_items', record_key, more_indexes=[{'columns': ['order_id']}], deleted_at_source=true,
) }}

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
