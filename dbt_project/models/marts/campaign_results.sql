-- Response per campaign, audience, window and arm: one row per campaign (destination, audience, campaign_date),
-- window and arm (treated | holdout), with the mean and sample variance of each response metric, which
-- campaign_lift compares. Metrics per customer over the window (or the days observed so far):
--   orders     revenue orders placed        revenue    their total (IRR)
--   contacts   contact-centre interactions  response   ordered at least once (retained; churn = 1 - response)

with

responses as (

    select * from {{ ref('fct_campaign_responses') }}

),

aggregated as (

    select
        {{ campaign_grain() }},
        arm,
        min(observed_days) as observed_days,
        bool_and(is_window_complete) as is_window_complete,
        count(*) as customer_count,
        sum(order_count) as order_count,
        sum(revenue) as revenue,
        sum(contact_count) as contact_count,
        avg(order_count) as orders_per_customer,
        coalesce(var_samp(order_count), 0) as orders_variance,
        avg(revenue) as revenue_per_customer,
        coalesce(var_samp(revenue), 0) as revenue_variance,
        avg(contact_count) as contacts_per_customer,
        coalesce(var_samp(contact_count), 0) as contacts_variance,
        avg(cast(has_ordered as int)) as response_rate,
        coalesce(var_samp(cast(has_ordered as int)), 0) as response_variance
    from responses
    group by {{ campaign_grain() }}, arm

),

final as (

    select
        -- ids
        md5(concat_ws('|', campaign_id, window_days, arm)) as campaign_result_id,

        -- campaign, window and arm
        {{ campaign_grain() }},
        arm,
        observed_days,
        is_window_complete,

        -- sample
        customer_count,

        -- totals
        order_count,
        cast(revenue as numeric(18, 2)) as revenue,
        contact_count,

        -- per-customer means and sample variances
        cast(orders_per_customer as double precision) as orders_per_customer,
        cast(orders_variance as double precision) as orders_variance,
        cast(revenue_per_customer as double precision) as revenue_per_customer,
        cast(revenue_variance as double precision) as revenue_variance,
        cast(contacts_per_customer as double precision) as contacts_per_customer,
        cast(contacts_variance as double precision) as contacts_variance,
        cast(response_rate as double precision) as response_rate,
        cast(response_variance as double precision) as response_variance,
        cast(1 - response_rate as double precision) as churn_rate

    from aggregated

)

select * from final
