{#-
    The relationship stage rules (dbt vars relationship_*), one definition for the views that compute the
    stage at read time: int_relationship_stages_assigned and customer_360. Both read the dates and window
    counts stored by int_customer_activity_aggregated (customer_360 through its copy in
    int_customer_360_assembled) and the as-of date, so the stage moves with the as-of date without any
    table being rewritten.

    relationship_day_counts(as_of): the day counts, as select-list items over the columns first_seen_at,
    last_order_at and last_activity_at of the relation in scope.
    relationship_stage(): the stage, over the columns recency_days, days_since_last_activity, tenure_days,
    order_count, recent_window_order_count and prior_window_order_count. First rule that applies wins:
      lost       nothing (order, interaction, form, sign-up) for more than relationship_lost_after_days
      new        first seen at most relationship_new_days ago
      eroding    a buyer whose last order is more than relationship_eroding_after_days ago, or whose
                 orders in the last relationship_decline_window_days fell below half the window before
                 (and that window had at least 2)
      committed  at least relationship_committed_min_orders orders over at least
                 relationship_committed_min_tenure_days of tenure
      developing everyone else
-#}
{% macro relationship_day_counts(as_of) -%}
    {{ as_of }} - cast(last_order_at at time zone 'UTC' as date) as recency_days,
    {{ as_of }} - cast(last_activity_at at time zone 'UTC' as date) as days_since_last_activity,
    greatest({{ as_of }} - cast(first_seen_at at time zone 'UTC' as date), 0) as tenure_days
{%- endmacro %}

{% macro relationship_stage() -%}
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
    end
{%- endmacro %}
