with

source as (

    select * from {{ source('orders', 'order_items') }}
    where {{ only_loaded_batches() }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by order_item_id
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
        _loaded_at as loaded_at

    from latest_versions
    where version_number = 1

)

select * from final
