{{
    affected_customers_config(
        indexes=[{'columns': ['customer_id'], 'unique': true}],
        affected='int_customers_affected_as_of',
        changes=activity_changes(),
        read_through_views=true,
    )
}}

-- Everything a customer did, summarised as of the as-of date (events before the end of that day, UTC):
-- the shared input of dim_customers, the relationship stage and customer_360. Dates and counts only (the
-- day counts are computed at read time by int_relationship_stages_assigned), so a row changes only when
-- the customer's events do or the as-of date moves one of them across a boundary.
-- Incremental: a daily run recomputes only the customers int_customers_affected_as_of lists for
-- activity_changes() (macros/affected_customers.sql): not those listed only for a delivery or a campaign.

with

customer_sources as (

    select * from {{ ref('int_customer_sources_aggregated') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

orders as (

    select * from {{ ref('int_orders_unioned') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

interactions as (

    select * from {{ ref('int_interactions_classified') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

-- the resolved forms: stated here, so the join to the clusters is an inner one and the daily filter reaches
-- the clusters before it
form_submissions as (

    select * from {{ ref('int_form_submissions_resolved') }}
    where
        customer_id is not null
        {{
            only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes(), keyword='and')
        }}

),

complaints as (

    select * from {{ ref('int_complaints_tracked') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

known_orders as (

    select * from orders
    where customer_id is not null and ordered_at < {{ as_of_cutoff() }}

),

customer_orders as (

    select
        customer_id,
        count(*) filter (where is_revenue_order) as order_count,
        coalesce(sum(total_amount) filter (where is_revenue_order), 0) as total_revenue,
        min(ordered_at) filter (where is_revenue_order) as first_order_at,
        max(ordered_at) filter (where is_revenue_order) as last_order_at,
        count(*) filter (where status = 'cancelled') as cancelled_order_count,
        count(*) filter (where status = 'returned') as returned_order_count,
        count(*) filter (
            where is_revenue_order
            and order_date > {{ as_of_date() }} - {{ var('relationship_decline_window_days') }}
        ) as recent_window_order_count,
        count(*) filter (
            where is_revenue_order
            and order_date > {{ as_of_date() }} - 2 * {{ var('relationship_decline_window_days') }}
            and order_date <= {{ as_of_date() }} - {{ var('relationship_decline_window_days') }}
        ) as prior_window_order_count
    from known_orders
    group by customer_id

),

channel_counts as (

    select
        customer_id,
        channel,
        count(*) as order_count,
        max(ordered_at) as last_ordered_at
    from known_orders
    where is_revenue_order
    group by customer_id, channel

),

preferred_channels as (

    select
        customer_id,
        channel as preferred_channel,
        round(cast(order_count as numeric) / sum(order_count) over (partition by customer_id), 4)
            as preferred_channel_share,
        row_number() over (
            partition by customer_id
            order by order_count desc, last_ordered_at desc, channel asc
        ) as channel_rank
    from channel_counts

),

customer_interactions as (

    select
        customer_id,
        count(*) as interaction_count,
        max(occurred_at) as last_interaction_at
    from interactions
    where customer_id is not null and occurred_at < {{ as_of_cutoff() }}
    group by customer_id

),

customer_forms as (

    select
        customer_id,
        count(*) as form_submission_count,
        max(submitted_at) as last_form_submitted_at
    from form_submissions
    where submitted_at < {{ as_of_cutoff() }}
    group by customer_id

),

customer_complaints as (

    select
        customer_id,
        count(*) as complaint_count,
        count(*) filter (
            where resolved_at is null or resolved_at >= {{ as_of_cutoff() }}
        ) as open_complaint_count
    from complaints
    where complained_at < {{ as_of_cutoff() }}
    group by customer_id

),

final as (

    select
        customer_sources.customer_id,

        -- sources
        least(customer_sources.first_seen_at, customer_orders.first_order_at) as first_seen_at,
        greatest(customer_sources.last_seen_at, customer_orders.last_order_at) as last_seen_at,

        -- orders
        coalesce(customer_orders.order_count, 0) as order_count,
        coalesce(customer_orders.total_revenue, 0) as total_revenue,
        round(customer_orders.total_revenue / nullif(customer_orders.order_count, 0), 2) as avg_order_value,
        customer_orders.first_order_at,
        customer_orders.last_order_at,
        coalesce(customer_orders.cancelled_order_count, 0) as cancelled_order_count,
        coalesce(customer_orders.returned_order_count, 0) as returned_order_count,
        coalesce(customer_orders.recent_window_order_count, 0) as recent_window_order_count,
        coalesce(customer_orders.prior_window_order_count, 0) as prior_window_order_count,
        preferred_channels.preferred_channel,
        preferred_channels.preferred_channel_share,

        -- interactions, forms, complaints
        coalesce(customer_interactions.interaction_count, 0) as interaction_count,
        customer_interactions.last_interaction_at,
        coalesce(customer_forms.form_submission_count, 0) as form_submission_count,
        customer_forms.last_form_submitted_at,
        coalesce(customer_complaints.complaint_count, 0) as complaint_count,
        coalesce(customer_complaints.open_complaint_count, 0) as open_complaint_count,

        -- the last thing the customer did: ordered, contacted us, filled a form, or signed up
        greatest(
            customer_orders.last_order_at,
            customer_interactions.last_interaction_at,
            customer_forms.last_form_submitted_at,
            case
                when customer_sources.first_seen_at < {{ as_of_cutoff() }} then customer_sources.first_seen_at
            end
        ) as last_activity_at

    from customer_sources
    left join customer_orders
        on customer_sources.customer_id = customer_orders.customer_id
    left join preferred_channels
        on
            customer_sources.customer_id = preferred_channels.customer_id
            and preferred_channels.channel_rank = 1
    left join customer_interactions
        on customer_sources.customer_id = customer_interactions.customer_id
    left join customer_forms
        on customer_sources.customer_id = customer_forms.customer_id
    left join customer_complaints
        on customer_sources.customer_id = customer_complaints.customer_id

)

select * from final
