{{
    config(
        materialized='view',
    )
}}

-- The stage of each customer's relationship with us, as of the as-of date, by explicit rules on purchase
-- and interaction history (thresholds are dbt vars in dbt_project.yml; the rules: macros/
-- relationship_stage.sql).
-- A view: the day counts and the stage move with the as-of date for every customer, so they are computed
-- at read time from the dates and window counts of int_customer_activity_aggregated (incremental), which
-- change only when the customer's events do or the as-of date moves one across a boundary
-- (int_customers_affected_as_of).

with

activity as (

    select * from {{ ref('int_customer_activity_aggregated') }}

),

measured as (

    select
        customer_id,
        {{ as_of_date() }} as as_of_date,
        order_count,
        recent_window_order_count,
        prior_window_order_count,
        {{ relationship_day_counts(as_of_date()) }}
    from activity

),

final as (

    select
        customer_id,
        as_of_date,
        recency_days,
        days_since_last_activity,
        tenure_days,
        {{ relationship_stage() }} as relationship_stage
    from measured

)

select * from final
