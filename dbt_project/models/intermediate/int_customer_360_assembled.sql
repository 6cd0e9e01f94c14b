{{
    affected_customers_config(
        indexes=[{'columns': ['customer_id'], 'unique': true}],
        affected='int_customers_affected_scored',
        tags=['post_scoring'],
        read_through_views=true,
    )
}}

-- The stored part of customer_360 (the view that adds the as-of date, age band, day counts, relationship
-- stage and the days of the last campaign's response window observed at read time): the golden record
-- (int_customers_described, with the birth date the age band needs), activity with the dates and window
-- counts the stage needs, the latest knowledge items, the latest segment and scores, and the last campaign.
-- Built after scoring (tag post_scoring).
-- Incremental: a daily run recomputes only int_customers_affected_scored (macros/affected_customers.sql).

with

customers as (

    select * from {{ ref('int_customers_described') }}
    {{ only_affected_customers(affected='int_customers_affected_scored') }}

),

activity as (

    select * from {{ ref('int_customer_activity_aggregated') }}
    {{ only_affected_customers(affected='int_customers_affected_scored') }}

),

knowledge as (

    select * from {{ ref('customer_knowledge') }}
    {{ only_affected_customers(affected='int_customers_affected_scored') }}

),

segments as (

    select * from {{ ref('customer_segments') }}
    {{ only_affected_customers(affected='int_customers_affected_scored') }}

),

campaign_responses as (

    select * from {{ ref('fct_campaign_responses') }}
    {{ only_affected_customers(affected='int_customers_affected_scored') }}

),

-- campaigns: the customer's latest campaign (either arm), over its longest window observed so far (the days
-- observed, which the as-of date moves while the window is open, are customer_360's, at read time)
last_campaigns as (

    select distinct on (customer_id)
        customer_id,
        campaign_id,
        campaign_date,
        arm,
        has_ordered,
        order_count
    from campaign_responses
    order by customer_id asc, campaign_date desc, campaign_id asc, window_days desc

),

known_knowledge as (

    select
        *,
        row_number() over (
            partition by customer_id
            order by observed_at desc nulls last, knowledge_item_id asc
        ) as recency_number
    from knowledge
    where observed_at < {{ as_of_cutoff() }}

),

customer_knowledge_summaries as (

    select
        customer_id,
        count(*) as knowledge_item_count,
        jsonb_agg(
            jsonb_build_object(
                'knowledge_item_id', knowledge_item_id,
                'flow', flow,
                'kind', kind,
                'content', content,
                'source', source,
                'observed_at', observed_at,
                'confidence', confidence
            )
            order by recency_number
        ) filter (
            where recency_number <= {{ var('customer_360_latest_knowledge_items') }}
        ) as latest_knowledge_items,
        max(observed_at) filter (where kind = 'need') as last_need_at,
        max(observed_at) filter (where flow = 'for') as last_contacted_for_at
    from known_knowledge
    group by customer_id

),

final as (

    select
        customers.customer_id,

        -- who (golden record, no direct PII)
        customers.gender,
        customers.birth_year,
        customers.birth_date,
        customers.city,
        customers.city_name_en,
        customers.province,
        customers.province_name_en,
        customers.business_type,
        customers.source_systems,
        customers.sibling_units,
        customers.first_seen_at,
        customers.last_seen_at,

        -- consent
        customers.has_marketing_consent,
        customers.has_profiling_opt_out,
        customers.consent_updated_at,
        customers.is_forgotten,

        -- recency, frequency, monetary
        customers.order_count as frequency,
        customers.total_revenue as monetary,
        customers.order_count,
        customers.total_revenue,
        customers.avg_order_value,
        customers.first_order_at,
        customers.last_order_at,
        customers.preferred_channel,
        customers.top_product_categories,
        activity.cancelled_order_count,
        activity.returned_order_count,
        activity.recent_window_order_count,
        activity.prior_window_order_count,

        -- relationship
        activity.last_activity_at,
        activity.interaction_count,
        activity.last_interaction_at,
        activity.form_submission_count,
        activity.complaint_count,
        activity.open_complaint_count as open_complaints,

        -- knowledge
        coalesce(customer_knowledge_summaries.knowledge_item_count, 0) as knowledge_item_count,
        coalesce(customer_knowledge_summaries.latest_knowledge_items, cast('[]' as jsonb)) as latest_knowledge_items,
        customer_knowledge_summaries.last_need_at,
        customer_knowledge_summaries.last_contacted_for_at,

        -- latest segment and scores
        segments.as_of_date as scores_as_of_date,
        segments.rfm_segment,
        segments.r_score,
        segments.f_score,
        segments.m_score,
        segments.behaviour_cluster,
        segments.behaviour_profile,
        segments.churn_probability,
        segments.p_alive,
        segments.expected_purchases,
        segments.predicted_clv,
        segments.value_tier,

        -- last campaign and response
        last_campaigns.campaign_id as last_campaign_id,
        last_campaigns.campaign_date as last_campaign_date,
        last_campaigns.arm as last_campaign_arm,
        last_campaigns.has_ordered as has_responded_to_last_campaign,
        last_campaigns.order_count as last_campaign_order_count

    from customers
    left join activity
        on customers.customer_id = activity.customer_id
    left join customer_knowledge_summaries
        on customers.customer_id = customer_knowledge_summaries.customer_id
    left join segments
        on customers.customer_id = segments.customer_id
    left join last_campaigns
        on customers.customer_id = last_campaigns.customer_id

)

select * from final
