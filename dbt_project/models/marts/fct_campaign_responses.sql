-- What each randomised customer did after a campaign's delivery, per response window: one row per campaign
-- (destination, audience, campaign_date), customer and window. The response comes from the facts the warehouse
-- already has (orders, contact-centre interactions) between the day after the delivery and the end of the
-- window, cut at the as-of date: a window still running is measured over the days observed so far.
-- Customers who asked to be forgotten have no rows (erasure also deletes their assignments).

with

assignments as (

    select * from {{ ref('stg_scoring__campaign_assignments') }}

),

orders as (

    select * from {{ ref('fct_orders') }}

),

interactions as (

    select * from {{ ref('fct_interactions') }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_aggregated') }}

),

response_windows as (

    {% for window_days in var('campaign_response_windows') -%}
        select {{ window_days }} as window_days
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

windowed_assignments as (

    select
        assignments.*,
        response_windows.window_days,
        {{ campaign_observed_days('response_windows.window_days', 'assignments.campaign_date') }} as observed_days,
        -- the window opens at the start of the day after the delivery (UTC)
        {{ start_of_day_after('assignments.campaign_date') }} as window_start_at,
        {{ start_of_day_after(
            'assignments.campaign_date + '
            ~ campaign_observed_days('response_windows.window_days', 'assignments.campaign_date')
        ) }} as window_end_at
    from assignments
    cross join response_windows
    left join erasure_requests
        on assignments.customer_id = erasure_requests.customer_id
    where
        erasure_requests.customer_id is null
        and {{ as_of_date() }} > assignments.campaign_date

),

order_responses as (

    select
        windowed_assignments.campaign_id,
        windowed_assignments.customer_id,
        windowed_assignments.window_days,
        count(*) as order_count,
        coalesce(sum(orders.total_amount), 0) as revenue,
        min(orders.ordered_at) as first_ordered_at
    from windowed_assignments
    inner join orders
        on
            windowed_assignments.customer_id = orders.customer_id
            and orders.ordered_at >= windowed_assignments.window_start_at
            and orders.ordered_at < windowed_assignments.window_end_at
    where orders.is_revenue_order
    group by windowed_assignments.campaign_id, windowed_assignments.customer_id, windowed_assignments.window_days

),

contact_responses as (

    select
        windowed_assignments.campaign_id,
        windowed_assignments.customer_id,
        windowed_assignments.window_days,
        count(*) as contact_count
    from windowed_assignments
    inner join interactions
        on
            windowed_assignments.customer_id = interactions.customer_id
            and interactions.occurred_at >= windowed_assignments.window_start_at
            and interactions.occurred_at < windowed_assignments.window_end_at
    group by windowed_assignments.campaign_id, windowed_assignments.customer_id, windowed_assignments.window_days

),

final as (

    select
        -- ids
        md5(
            concat_ws(
                '|', windowed_assignments.campaign_id, windowed_assignments.customer_id,
                windowed_assignments.window_days
            )
        ) as campaign_response_id,
        windowed_assignments.campaign_id,
        windowed_assignments.customer_id,

        -- campaign and arm
        windowed_assignments.destination,
        windowed_assignments.audience,
        windowed_assignments.campaign_date,
        windowed_assignments.arm,
        windowed_assignments.predicted_churn_probability,
        ntile(10) over (
            partition by windowed_assignments.campaign_id, windowed_assignments.window_days
            order by
                windowed_assignments.predicted_churn_probability asc nulls first,
                windowed_assignments.customer_id asc
        ) as predicted_churn_decile,

        -- window
        windowed_assignments.window_days,
        windowed_assignments.observed_days,
        windowed_assignments.observed_days >= windowed_assignments.window_days as is_window_complete,

        -- response
        coalesce(order_responses.order_count, 0) as order_count,
        coalesce(order_responses.revenue, 0) as revenue,
        coalesce(contact_responses.contact_count, 0) as contact_count,
        coalesce(order_responses.order_count, 0) > 0 as has_ordered,
        order_responses.first_ordered_at,

        -- timestamps
        windowed_assignments.window_start_at,
        windowed_assignments.window_end_at

    from windowed_assignments
    left join order_responses
        on
            windowed_assignments.campaign_id = order_responses.campaign_id
            and windowed_assignments.customer_id = order_responses.customer_id
            and windowed_assignments.window_days = order_responses.window_days
    left join contact_responses
        on
            windowed_assignments.campaign_id = contact_responses.campaign_id
            and windowed_assignments.customer_id = contact_responses.customer_id
            and windowed_assignments.window_days = contact_responses.window_days

)

select * from final
