{{
    config(
        tags=['post_scoring'],
    )
}}

-- One wide row per customer: the golden record (no direct PII), recency / frequency / monetary and
-- tenure as of the as-of date, relationship stage, open complaints, the latest knowledge items and the
-- latest segment and scores. Re-run after scoring (tag post_scoring).

with

customers as (

    select * from {{ ref('dim_customers') }}

),

activity as (

    select * from {{ ref('int_customer_activity_aggregated') }}

),

relationship_stages as (

    select * from {{ ref('int_relationship_stages_assigned') }}

),

knowledge as (

    select * from {{ ref('customer_knowledge') }}

),

segments as (

    select * from {{ ref('customer_segments') }}

),

campaign_responses as (

    select * from {{ ref('fct_campaign_responses') }}

),

-- campaigns: the customer's latest campaign (either arm), over its longest window observed so far
last_campaigns as (

    select distinct on (customer_id)
        customer_id,
        campaign_id,
        campaign_date,
        arm,
        has_ordered,
        order_count,
        observed_days
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
        customers.as_of_date,

        -- who (golden record, no direct PII)
        customers.gender,
        customers.birth_year,
        customers.age_band,
        customers.city,
        customers.city_name_en,
        customers.province,
        customers.province_name_en,
        customers.business_type,
        customers.source_systems,
        customers.sibling_units,
        customers.first_seen_at,
        customers.last_seen_at,
        relationship_stages.tenure_days,

        -- consent
        customers.has_marketing_consent,
        customers.has_profiling_opt_out,
        customers.consent_updated_at,
        customers.is_forgotten,

        -- recency, frequency, monetary
        relationship_stages.recency_days,
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

        -- relationship
        relationship_stages.relationship_stage,
        relationship_stages.days_since_last_activity,
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
        last_campaigns.order_count as last_campaign_order_count,
        last_campaigns.observed_days as last_campaign_observed_days

    from customers
    left join activity
        on customers.customer_id = activity.customer_id
    left join relationship_stages
        on customers.customer_id = relationship_stages.customer_id
    left join customer_knowledge_summaries
        on customers.customer_id = customer_knowledge_summaries.customer_id
    left join segments
        on customers.customer_id = segments.customer_id
    left join last_campaigns
        on customers.customer_id = last_campaigns.customer_id

)

select * from final
