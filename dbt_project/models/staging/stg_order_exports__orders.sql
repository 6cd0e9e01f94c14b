{%- set record_key = [['shop', 'lower(btrim(shop))'], ['shop_order_id', 'btrim(order_id)']] -%}
{{ incremental_staging_config('order_exports', 'orders', record_key) }}

with

{{ latest_loaded_versions(source('order_exports', 'orders'), record_key, as_received=true) }},

converted as (

    -- text as received -> typed values (macros/source_values.sql); the latest version of each key only
    select
        *,
        {{ source_date('order_date') }} as order_date_value
    {{ current_versions() }}

),

final as (

    select
        -- ids
        lower(btrim(shop)) as shop,
        btrim(order_id) as shop_order_id,
        nullif(regexp_replace(util.ascii_digits(customer_source_id), '\s', '', 'g'), '') as customer_source_id,

        -- order
        util.parse_integer(quantity) as item_quantity,
        cast(util.parse_decimal(amount) as numeric(14, 2)) as total_amount,
        nullif(btrim(items), '') as items,
        extras,

        -- dates
        order_date_value as order_date,
        {{ staging_times() }}

    from converted

)

select * from final
