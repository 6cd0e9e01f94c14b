{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
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
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where
        version_number = 1
        -- deleted at the source (soft-delete column or key reconciliation): no longer counts
        and _deleted_at_source is not true

)

select * from final
