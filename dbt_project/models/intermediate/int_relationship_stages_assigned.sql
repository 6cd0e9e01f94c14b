-- The stage of each customer's relationship with us, as of the as-of date, by explicit rules on purchase
-- and interaction history (thresholds are dbt vars in dbt_project.yml). First rule that applies wins:
--   lost       nothing (order, interaction, form, sign-up) for more than relationship_lost_after_days
--   new        first seen at most relationship_new_days ago
--   eroding    a buyer whose last order is more than relationship_eroding_after_days ago, or whose
--              orders in the last relationship_decline_window_days fell below half the window before
--              (and that window had at least 2)
--   committed  at least relationship_committed_min_orders orders over at least
--              relationship_committed_min_tenure_days of tenure
--   developing everyone else

with

activity as (

    select * from {{ ref('int_customer_activity_aggregated') }}

),

measured as (

    select
        customer_id,
        as_of_date,
        order_count,
        recent_window_order_count,
        prior_window_order_count,
        as_of_date - cast(last_order_at at time zone 'UTC' as date) as recency_days,
        as_of_date - cast(last_activity_at at time zone 'UTC' as date) as days_since_last_activity,
        greatest(as_of_date - cast(first_seen_at at time zone 'UTC' as date), 0) as tenure_days
    from activity

),

final as (

    select
        customer_id,
        as_of_date,
        recency_days,
        days_since_last_activity,
        tenure_days,
        case
            when coalesce(days_since_last_activity, tenure_days) > {{ var('relationship_lost_after_days') }}
                then 'lost'
            when tenure_days <= {{ var('relationship_new_days') }}
                then 'new'
            when
                order_count > 0
                and (
                    recency_days > {{ var('relationship_eroding_after_days') }}
                    or (
                        prior_window_order_count >= 2
                        and recent_window_order_count * 2 < prior_window_order_count
                    )
                )
                then 'eroding'
            when
                order_count >= {{ var('relationship_committed_min_orders') }}
                and tenure_days >= {{ var('relationship_committed_min_tenure_days') }}
                then 'committed'
            else 'developing'
        end as relationship_stage
    from measured

)

select * from final
