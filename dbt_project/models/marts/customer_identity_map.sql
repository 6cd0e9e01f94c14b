{{ affected_customers_config(changes=record_changes()) }}

-- Incremental: a daily run recomputes only the customers whose records changed (record_changes(),
-- macros/affected_customers.sql).

with

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}
    {{ only_affected_customers(changes=record_changes()) }}

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
