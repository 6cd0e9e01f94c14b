with

products as (

    select * from {{ ref('stg_orders__products') }}

),

final as (

    select
        product_id,
        sku,
        product_name,
        category,
        unit_price,
        is_deleted_at_source,
        updated_at
    from products

)

select * from final
