{{ affected_customers_config(indexes=[{'columns': ['customer_id'], 'unique': true}]) }}

-- How we know each customer: which source systems and sibling units hold a record of them, and when the
-- records first and last showed them.
-- Incremental: a daily run recomputes only the affected customers (macros/affected_customers.sql).

with

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}
    {{ only_affected_customers() }}

),

customer_records as (

    select * from {{ ref('int_customer_records_unioned') }}

),

final as (

    select
        record_clusters.customer_id,
        min(customer_records.first_seen_at) as first_seen_at,
        max(customer_records.last_seen_at) as last_seen_at,
        array_agg(distinct record_clusters.source_system order by record_clusters.source_system)
            as source_systems,
        coalesce(
            array_agg(distinct customer_records.sibling_unit order by customer_records.sibling_unit)
            filter (where customer_records.sibling_unit is not null),
            cast('{}' as text[])
        ) as sibling_units,
        count(*) as source_record_count
    from record_clusters
    left join customer_records
        on {{ same_source_record('record_clusters', 'customer_records') }}
    group by record_clusters.customer_id

)

select * from final
