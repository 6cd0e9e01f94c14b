with

source as (

    select * from {{ source('scoring', 'delivered_state') }}

),

final as (

    select
        -- ids
        destination,
        destination_key,
        customer_id,

        -- delivery
        payload_hash,
        payload,

        -- timestamps
        delivered_at

    from source

)

select * from final
