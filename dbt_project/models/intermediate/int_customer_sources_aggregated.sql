{{ affected_customers_config(indexes=[{'columns': ['customer_id'], 'unique': true}], changes=record_changes()) }}

-- How we know each customer: which source systems and sibling units hold a record of them, and when the
-- records first and last showed them.
-- Incremental: a daily run recomputes only the customers whose records changed (record_changes(),
-- macros/affected_customers.sql).

with

resolved_records as (

    select * from {{ ref('int_customer_records_resolved') }}
    {{ only_affected_customers(changes=record_changes()) }}

),

final as (

    select
        customer_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        array_agg(distinct source_system order by source_system) as source_systems,
        coalesce(
            array_agg(distinct sibling_unit order by sibling_unit) filter (where sibling_unit is not null),
            cast('{}' as text[])
        ) as sibling_units,
        count(*) as source_record_count
    from resolved_records
    group by customer_id

)

select * from final
