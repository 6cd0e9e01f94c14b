-- Which source record each golden-record attribute came from, and what it beat: for data stewards
-- reviewing survivorship (seed survivorship_source_trust). Compile with
-- `dbt compile --select golden_record_lineage` and run against the warehouse; it reads personal values.

with

ranked_attributes as (

    select * from {{ ref('int_customer_attributes_ranked') }}

),

summarised as (

    select
        customer_id,
        attribute_name,
        max(source_system) filter (where is_surviving_value) as surviving_source_system,
        max(source_record_id) filter (where is_surviving_value) as surviving_source_record_id,
        count(*) as candidate_values,
        count(distinct attribute_value) as distinct_values
    from ranked_attributes
    group by customer_id, attribute_name

),

final as (

    select
        attribute_name,
        surviving_source_system,
        count(*) as customers,
        count(*) filter (where distinct_values > 1) as customers_with_conflicts
    from summarised
    group by attribute_name, surviving_source_system
    order by attribute_name asc, customers desc

)

select * from final
