with

source as (

    select * from {{ source('orders', 'customers') }}
    where {{ only_loaded_batches() }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by customer_id
            order by updated_at desc nulls last, _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where customer_id is not null

),

final as (

    select
        -- ids
        customer_id as orders_customer_id,
        'orders' as source_system,
        cast(customer_id as text) as source_record_id,

        -- canonical customer fields
        {{ normalized_customer_fields(has_full_name=false) }},

        -- timestamps
        created_at,
        updated_at,
        _loaded_at as loaded_at

    from latest_versions
    where version_number = 1

)

select * from final
