-- A view: it must show what the identity / scoring / delivery tasks wrote moments ago.
{{ config(materialized="view", tags=["identity_output"]) }}

with

source as (

    select * from {{ source('identity', 'record_clusters') }}

),

final as (

    select
        -- ids
        source_system,
        source_record_id,
        customer_id,

        -- resolution
        match_rule,
        cast(match_score as double precision) as match_score,

        -- timestamps
        resolved_at

    from source
    where customer_id is not null

)

select * from final
