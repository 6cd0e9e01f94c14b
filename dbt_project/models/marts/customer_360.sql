{{
    config(
        materialized='view',
        tags=['post_scoring'],
    )
}}

-- One wide row per customer: the golden record (no direct PII), recency / frequency / monetary and
-- tenure as of the as-of date, relationship stage, open complaints, the latest knowledge items and the
-- latest segment and scores. Re-run after scoring (tag post_scoring).
-- A view over int_customer_360_assembled (incremental, indexed on customer_id): the as-of date, age band,
-- day counts, relationship stage (macros/relationship_stage.sql) and the days of the last campaign's response
-- window observed move with the as-of date for every customer, so they are computed at read time from the
-- stored dates and counts.

with

assembled as (

    select * from {{ ref('int_customer_360_assembled') }}

),

measured as (

    select
        *,
        {{ relationship_day_counts(as_of_date()) }}
    from assembled

),

final as (

    select
        customer_id,
        {{ as_of_date() }} as as_of_date,

        -- who (golden record, no direct PII)
        {{ coarse_golden_record_columns() }},
        source_systems,
        sibling_units,
        first_seen_at,
        last_seen_at,
        tenure_days,

        -- consent
        has_marketing_consent,
        has_profiling_opt_out,
        consent_updated_at,
        is_forgotten,

        -- recency, frequency, monetary
        recency_days,
        frequency,
        monetary,
        {{ order_history_columns() }},
        cancelled_order_count,
        returned_order_count,

        -- relationship
        {{ relationship_stage() }} as relationship_stage,
        days_since_last_activity,
        last_activity_at,
        interaction_count,
        last_interaction_at,
        form_submission_count,
        complaint_count,
        open_complaints,

        -- knowledge
        knowledge_item_count,
        latest_knowledge_items,
        last_need_at,
        last_contacted_for_at,

        -- latest segment and scores
        scores_as_of_date,
        rfm_segment,
        r_score,
        f_score,
        m_score,
        behaviour_cluster,
        behaviour_profile,
        churn_probability,
        p_alive,
        expected_purchases,
        predicted_clv,
        value_tier,

        -- last campaign and response
        last_campaign_id,
        last_campaign_date,
        last_campaign_arm,
        has_responded_to_last_campaign,
        last_campaign_order_count,
        -- the days of its longest response window (the one int_customer_360_assembled describes) observed by
        -- the as-of date, as fct_campaign_responses counts them
        {{ campaign_observed_days(var('campaign_response_windows') | max, 'last_campaign_date') }}
            as last_campaign_observed_days

    from measured

)

select * from final
