with

source as (

    select * from {{ source('order_exports', 'orders') }}
    where {{ only_loaded_batches() }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by shop, order_id
            order by _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where order_id is not null

),

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
        _loaded_at as loaded_at

    from latest_versions
    where version_number = 1

)

select * from final
