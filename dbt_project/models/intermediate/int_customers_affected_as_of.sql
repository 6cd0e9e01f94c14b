{{
    config(
        indexes=[
            {'columns': ['customer_id'], 'unique': true},
        ],
    )
}}

-- The customers a daily run recomputes in the as-of models (int_customer_activity_aggregated,
-- int_customer_categories_ranked, int_customer_consents_pivoted, int_customers_described): those of
-- int_customers_affected (their inputs changed) plus those whose stored as-of values the move from the
-- previous build's as-of date P (int_as_of_date, before this run rebuilds it) to this one C changes although
-- none of their inputs did:
--   as_of_events:  an order, order item, interaction, form, complaint (made or resolved), consent statement or
--                  first sight dated in [end of P, end of C): it enters the known past
--   as_of_windows: a revenue order dated in (P - w, C - w] or (P - 2w, C - 2w], w the decline window
--                  (relationship_decline_window_days): it moves between the recent and prior windows
--   as_of_campaigns: every customer of a campaign delivered on or after P (the as-of date C is the first past
--                  its delivery: its customers get a last campaign), and the treated customers who responded to
--                  a campaign whose longest response window was still open at P
--                  (macros/affected_customers.sql campaign_customers_listed)
-- Values computed from dates at read time (the day counts, relationship stage, age band, the last campaign's
-- days observed, as_of_date of the views dim_customers, customer_360 and int_relationship_stages_assigned)
-- need no entry.
-- Without a previous as-of date (first build) or with C before P (a backfill) every customer is listed.

with

affected as (

    select * from {{ ref('int_customers_affected') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

customer_sources as (

    select * from {{ ref('int_customer_sources_aggregated') }}

),

customer_facts as (

    select * from {{ ref('int_customer_facts_unioned') }}

),

-- not materialized: the campaign responders below probe its index on customer_id per assignment
orders as not materialized (

    select * from {{ ref('int_orders_unioned') }}

),

complaints as (

    select * from {{ ref('int_complaints_tracked') }}

),

consent_events as (

    select * from {{ ref('int_consent_events_unioned') }}

),

campaign_assignments as (

    select * from {{ ref('stg_scoring__campaign_assignments') }}

),

bounds as (

    select
        previous_as_of_date,
        as_of_date,
        cast(previous_as_of_date + 1 as timestamp) at time zone 'UTC' as previous_cutoff,
        {{ as_of_cutoff() }} as cutoff,
        previous_as_of_date is null or previous_as_of_date > as_of_date as is_everyone
    from (
        select
            {{ previous_as_of_date() }} as previous_as_of_date,
            {{ as_of_date() }} as as_of_date
    ) as dates

),

changes as (

    -- the reasons int_customers_affected gives, kept: a model that follows only some of them (e.g. the
    -- categories, which no delivery or interaction changes) recomputes only those customers
    {{ changes_listed() }}
    union all
    select
        customer_id,
        'everyone' as change
    from record_clusters
    where (select bounds.is_everyone from bounds)
    union all
    select
        customer_id,
        'as_of_events' as change
    from customer_facts
    where
        occurred_at >= (select bounds.previous_cutoff from bounds)
        and occurred_at < (select bounds.cutoff from bounds)
    {% for facts, column in [
        ('complaints', 'complained_at'),
        ('complaints', 'resolved_at'),
        ('consent_events', 'occurred_at'),
        ('customer_sources', 'first_seen_at'),
    ] -%}
        union all
        select
            customer_id,
            'as_of_events' as change
        from {{ facts }}
        where
            customer_id is not null
            and {{ column }} >= (select bounds.previous_cutoff from bounds)
            and {{ column }} < (select bounds.cutoff from bounds)
    {% endfor %}
    union all
    select
        customer_id,
        'as_of_windows' as change
    from orders
    where
        customer_id is not null
        and is_revenue_order
        and (
            {% set window_days = var('relationship_decline_window_days') -%}
            {% for windows in [1, 2] -%}
                {{ 'or ' if not loop.first }}(
                    order_date > (select bounds.previous_as_of_date - {{ windows }} * {{ window_days }} from bounds)
                    and order_date <= (select bounds.as_of_date - {{ windows }} * {{ window_days }} from bounds)
                )
            {% endfor %}
        )
    union all
    {{ campaign_customers_listed(
        open_since='(select bounds.previous_as_of_date - ' ~ (var('campaign_response_windows') | max)
            ~ ' from bounds)',
        first_visible_since='(select bounds.previous_as_of_date from bounds)'
    ) }}

),

final as (

    {{ customers_with_changes() }}

)

select * from final
