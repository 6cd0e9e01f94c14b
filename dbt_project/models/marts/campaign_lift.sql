-- Lift per campaign, window and metric: treated minus holdout, with a 95% Welch t-interval (unequal variances;
-- macros/campaign_statistics.sql, docs/campaigns.md). One row per campaign (destination, audience,
-- campaign_date), window and metric (orders, revenue, contacts, response). A campaign whose arms are both
-- present gets a row; below campaign_min_customers_per_arm customers in either arm there is no interval and
-- nothing is significant.

with

results as (

    select * from {{ ref('campaign_results') }}

),

arms as (

    select
        {{ campaign_grain() }},
        min(observed_days) as observed_days,
        bool_and(is_window_complete) as is_window_complete,
        max(customer_count) filter (where arm = 'treated') as treated_customers,
        max(customer_count) filter (where arm = 'holdout') as holdout_customers,
        {% for metric in ['orders', 'revenue', 'contacts', 'response'] -%}
            {%- set mean = 'response_rate' if metric == 'response' else metric ~ '_per_customer' -%}
            max({{ mean }}) filter (where arm = 'treated') as {{ metric }}_treated_mean,
            max({{ mean }}) filter (where arm = 'holdout') as {{ metric }}_holdout_mean,
            max({{ metric }}_variance) filter (where arm = 'treated') as {{ metric }}_treated_variance,
            max({{ metric }}_variance) filter (where arm = 'holdout') as {{ metric }}_holdout_variance
            {%- if not loop.last %},{% endif %}
        {% endfor %}
    from results
    group by {{ campaign_grain() }}

),

metrics as (

    {% for metric in ['orders', 'revenue', 'contacts', 'response'] -%}
        select
            {{ campaign_grain() }},
            observed_days,
            is_window_complete,
            treated_customers,
            holdout_customers,
            '{{ metric }}' as metric,
            {{ metric }}_treated_mean as treated_mean,
            {{ metric }}_holdout_mean as holdout_mean,
            {{ metric }}_treated_variance as treated_variance,
            {{ metric }}_holdout_variance as holdout_variance
        from arms
        where treated_customers is not null and holdout_customers is not null
        {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

welch as (

    select
        *,
        treated_mean - holdout_mean as lift,
        sqrt(treated_variance / treated_customers + holdout_variance / holdout_customers) as standard_error,
        {{ welch_df('treated_variance', 'treated_customers', 'holdout_variance', 'holdout_customers') }}
            as degrees_of_freedom,
        treated_customers >= {{ var('campaign_min_customers_per_arm') }}
        and holdout_customers >= {{ var('campaign_min_customers_per_arm') }} as has_minimum_sample
    from metrics

),

intervals as (

    select
        *,
        case
            when has_minimum_sample and degrees_of_freedom is not null
                then {{ t_critical_975('degrees_of_freedom') }} * standard_error
        end as margin_of_error
    from welch

),

final as (

    select
        -- ids
        md5(concat_ws('|', campaign_id, window_days, metric)) as campaign_lift_id,

        -- campaign, window and metric
        {{ campaign_grain() }},
        observed_days,
        is_window_complete,
        metric,

        -- samples
        treated_customers,
        holdout_customers,
        has_minimum_sample,

        -- estimate and 95% Welch t-interval
        cast(treated_mean as double precision) as treated_mean,
        cast(holdout_mean as double precision) as holdout_mean,
        cast(lift as double precision) as lift,
        cast(case when holdout_mean <> 0 then lift / holdout_mean end as double precision) as relative_lift,
        cast(standard_error as double precision) as standard_error,
        cast(degrees_of_freedom as double precision) as degrees_of_freedom,
        cast(lift - margin_of_error as double precision) as ci_low,
        cast(lift + margin_of_error as double precision) as ci_high,
        coalesce(margin_of_error is not null and (lift - margin_of_error > 0 or lift + margin_of_error < 0), false)
            as is_significant

    from intervals

)

select * from final
