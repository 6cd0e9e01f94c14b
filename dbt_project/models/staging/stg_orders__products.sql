with

source as (

    select * from {{ source('orders', 'products') }}
    where {{ only_loaded_batches() }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by product_id
            order by updated_at desc nulls last, _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where product_id is not null

),

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
        _loaded_at as loaded_at

    from latest_versions
    where version_number = 1

)

select * from final
