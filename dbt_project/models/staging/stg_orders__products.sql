{%- set record_key = [['product_id', 'product_id']] -%}
{{ incremental_staging_config('orders', 'products', record_key) }}

-- Small, but incremental like the other orders tables: a rebuilt products table would give every
-- product a new staged_at, and with it re-read every order line in fct_order_items.
-- A product deleted at the source stays, flagged (is_deleted_at_source), with the attributes of its last
-- version: the order lines that name it keep their product and category (fct_order_items -> dim_products),
-- as the customers and orders deleted at the source do not (they leave staging).

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

        -- deletion at the source (soft-delete column or key reconciliation; ingest/orders_db.py)
        _deleted_at_source as is_deleted_at_source,

        -- timestamps
        updated_at,
        {{ staging_times() }}

    {{ current_versions() }}

)

select * from final
