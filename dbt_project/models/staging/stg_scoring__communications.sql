-- A view: it must show what the identity / scoring / delivery tasks wrote moments ago.
{{ config(materialized="view") }}

with

source as (

    select * from {{ source('scoring', 'communications') }}

),

final as (

    select
        -- ids
        md5(concat_ws('|', export_id, destination, customer_id, audience, change_type)) as communication_id,
        export_id,
        customer_id,

        -- communication
        destination,
        audience,
        change_type,
        purpose,
        kind as communication_kind,

        -- timestamps
        communicated_at

    from source

)

select * from final
