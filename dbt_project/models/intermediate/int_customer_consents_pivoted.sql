{{
    affected_customers_config(
        indexes=[{'columns': ['customer_id'], 'unique': true}],
        affected='int_customers_affected_as_of',
        changes=activity_changes(),
    )
}}

-- Each customer's current consent, as of the as-of date: the latest statement per purpose wins.
-- Marketing needs an explicit grant (no statement = no consent); profiling is allowed unless the
-- customer opted out (no statement = no opt-out).
-- Incremental: a daily run recomputes only the customers int_customers_affected_as_of lists for
-- activity_changes() (macros/affected_customers.sql): not those listed only for a delivery or a campaign.

with

consent_events as (

    select * from {{ ref('int_consent_events_unioned') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

known_events as (

    select * from consent_events
    where occurred_at < {{ as_of_cutoff() }}

),

latest_per_purpose as (

    select
        *,
        row_number() over (
            partition by customer_id, purpose
            order by occurred_at desc, is_granted asc, consent_event_id asc
        ) as recency_number
    from known_events

),

final as (

    select
        customer_id,
        coalesce(bool_or(is_granted) filter (where purpose = 'marketing'), false) as has_marketing_consent,
        coalesce(bool_or(not is_granted) filter (where purpose = 'profiling'), false) as has_profiling_opt_out,
        max(occurred_at) as consent_updated_at
    from latest_per_purpose
    where recency_number = 1
    group by customer_id

)

select * from final
