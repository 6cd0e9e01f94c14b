-- A view: it must show what the identity / scoring / delivery tasks wrote moments ago.
{{ config(materialized="view", tags=["identity_output"]) }}

with

source as (

    select * from {{ source('identity', 'unresolved') }}

),

final as (

    select
        -- ids
        source_system,
        source_record_id,

        -- why
        reason,

        -- timestamps
        seen_at

    from source

)

select * from final
