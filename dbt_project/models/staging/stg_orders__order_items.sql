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
        {{ staging_times() }}

    {{ current_versions(deleted_at_source=true) }}

)

select * from final
