with

source as (

    select * from {{ source('orders', 'orders') }}
    where {{ only_loaded_batches() }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by order_id
            order by updated_at desc nulls last, _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where order_id is not null

),

final as (

    select
        -- ids
        order_id,
        customer_id as orders_customer_id,

        -- order
        lower(btrim(status)) as status,
        lower(btrim(channel)) as channel,
        total_amount,
        coalesce(upper(btrim(currency)), 'IRR') as currency,

        -- timestamps
        ordered_at,
        updated_at,
        _loaded_at as loaded_at

    from latest_versions
    where version_number = 1

)

select * from final
