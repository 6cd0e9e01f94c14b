-- A view: it must show what the identity / scoring / delivery tasks wrote moments ago.
{{ config(materialized="view", tags=["identity_output"]) }}

with

source as (

    select * from {{ source('identity', 'customer_id_merges') }}

),

final as (

    select
        -- ids
        old_customer_id,
        new_customer_id,

        -- timestamps
        merged_at

    from source

)

select * from final
