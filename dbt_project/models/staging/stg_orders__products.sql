{%- set record_key = [['product_id', 'product_id']] -%}
{{ incremental_staging_config('orders', 'products', record_key, deleted_at_source=true) }}

-- Small, but incremental like the other orders tables: a rebuilt products table would give every
-- product a new staged_at, and with it re-read every order line in fct_order_items.

with

{{ latest_loaded_versions(source('orders', 'products'), record_key, ['updated_at desc nulls last']) }},

final as (

    select
        -- ids
        product_id,
        nullif(upper(btrim(sku)), '') as sku,

        -- product
        {{ clean_text('name') }} as product_name,
        coalesce(nullif(lower(btrim(category)), ''), 'uncategorised') as category,
        unit_price,

        -- timestamps
        updated_at,
        {{ staging_times() }}

    {{ current_versions(deleted_at_source=true) }}

)

select * from final
