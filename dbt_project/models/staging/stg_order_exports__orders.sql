{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [['shop', 'lower(btrim(shop))'], ['shop_order_id', 'btrim(order_id)']] -%}

{{
    config(
        materialized='incremental',
        unique_key=staging_unique_key(record_key),
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=staging_indexes(record_key),
        post_hook=[staging_delete_hook('order_exports', 'orders', record_key)],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the exported orders touched since
-- the last run, each from all of its loaded raw versions, so the result equals a full build. The key is
-- the (shop, order id) pair staging outputs, trimmed and lower-cased, in the full build too.

with

{{ latest_loaded_versions(source('order_exports', 'orders'), record_key) }},

final as (

    select
        -- ids
        lower(btrim(shop)) as shop,
        btrim(order_id) as shop_order_id,
        nullif(regexp_replace(util.ascii_digits(customer_source_id), '\s', '', 'g'), '') as customer_source_id,

        -- order
        quantity as item_quantity,
        cast(amount as numeric(14, 2)) as total_amount,
        nullif(btrim(items), '') as items,
        extras,

        -- dates
        order_date,
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where version_number = 1

)

select * from final
