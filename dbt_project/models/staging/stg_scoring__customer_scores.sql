-- A view: it must show what the identity / scoring / delivery tasks wrote moments ago.
{{ config(materialized="view") }}

with

source as (

    select * from {{ source('scoring', 'customer_scores') }}

),

final as (

    select
        -- ids
        customer_id,

        -- recency, frequency, monetary
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        rfm_segment,

        -- behaviour
        behaviour_cluster,
        behaviour_profile,

        -- predictions
        churn_probability,
        expected_purchases,
        p_alive,
        predicted_clv,
        value_tier,
        model_run_ids,

        -- dates
        as_of_date,
        scored_at

    from source

)

select * from final
