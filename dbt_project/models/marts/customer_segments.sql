{{
    affected_customers_config(
        affected='int_customers_affected_scored',
        tags=['post_scoring'],
        changes=segment_changes(),
    )
}}

-- Each customer's latest scores (scoring.customer_scores, written by the Python scoring task) on or
-- before the as-of date. Scores of a customer id that identity resolution since merged into another
-- count for the surviving id. Customers who opted out of profiling get no segment.
-- Works on an empty scoring table (no rows).
-- Incremental: a daily run recomputes only the customers int_customers_affected_scored lists for
-- segment_changes() (macros/affected_customers.sql: not those listed only for a delivery or a campaign),
-- reading their scores and those of the ids merged into them.

with

-- on a daily run, the ids merged into the affected customers: their scores count for them
merged_into_affected as (

    select old_customer_id from {{ ref('stg_identity__customer_id_merges') }}
    {{
        only_affected_customers('new_customer_id', affected='int_customers_affected_scored', changes=segment_changes())
    }}

),

customer_scores as (

    select * from {{ ref('stg_scoring__customer_scores') }}
    {%- if follows_affected_customers() %}
        where
            customer_id in (
                select affected.customer_id from {{ ref('int_customers_affected_scored') }} as affected
                {{ listed_for(segment_changes()) }}
            )
            or customer_id in (select merged_into_affected.old_customer_id from merged_into_affected)
    {%- endif %}

),

customer_id_merges as (

    select * from {{ ref('stg_identity__customer_id_merges') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}
    {{ only_affected_customers(affected='int_customers_affected_scored', changes=segment_changes()) }}

),

consents as (

    select * from {{ ref('int_customer_consents_pivoted') }}
    {{ only_affected_customers(affected='int_customers_affected_scored', changes=segment_changes()) }}

),

current_customers as (

    select distinct customer_id from record_clusters

),

latest_merges as (

    select distinct on (old_customer_id)
        old_customer_id,
        new_customer_id
    from customer_id_merges
    order by old_customer_id asc, merged_at desc

),

remapped_scores as (

    select
        coalesce(latest_merges.new_customer_id, customer_scores.customer_id) as customer_id,
        latest_merges.new_customer_id is not null as is_from_merged_customer,
        customer_scores.as_of_date,
        customer_scores.recency_days,
        customer_scores.frequency,
        customer_scores.monetary,
        customer_scores.r_score,
        customer_scores.f_score,
        customer_scores.m_score,
        customer_scores.rfm_segment,
        customer_scores.behaviour_cluster,
        customer_scores.behaviour_profile,
        customer_scores.churn_probability,
        customer_scores.expected_purchases,
        customer_scores.p_alive,
        customer_scores.predicted_clv,
        customer_scores.value_tier,
        customer_scores.model_run_ids,
        customer_scores.scored_at
    from customer_scores
    left join latest_merges
        on customer_scores.customer_id = latest_merges.old_customer_id
    where customer_scores.as_of_date <= {{ as_of_date() }}

),

latest_scores as (

    select
        *,
        row_number() over (
            partition by customer_id
            order by as_of_date desc, is_from_merged_customer asc, scored_at desc
        ) as recency_number
    from remapped_scores

),

final as (

    select
        latest_scores.customer_id,
        latest_scores.as_of_date,
        latest_scores.recency_days,
        latest_scores.frequency,
        latest_scores.monetary,
        latest_scores.r_score,
        latest_scores.f_score,
        latest_scores.m_score,
        latest_scores.rfm_segment,
        latest_scores.behaviour_cluster,
        latest_scores.behaviour_profile,
        latest_scores.churn_probability,
        latest_scores.expected_purchases,
        latest_scores.p_alive,
        latest_scores.predicted_clv,
        latest_scores.value_tier,
        latest_scores.model_run_ids,
        latest_scores.scored_at
    from latest_scores
    inner join current_customers
        on latest_scores.customer_id = current_customers.customer_id
    left join consents
        on latest_scores.customer_id = consents.customer_id
    where
        latest_scores.recency_number = 1
        and not coalesce(consents.has_profiling_opt_out, false)

)

select * from final
