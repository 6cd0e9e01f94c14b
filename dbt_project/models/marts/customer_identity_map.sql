with

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

final as (

    select
        customer_id,
        source_system,
        source_record_id,
        match_rule,
        match_score,
        resolved_at
    from record_clusters

)

select * from final
