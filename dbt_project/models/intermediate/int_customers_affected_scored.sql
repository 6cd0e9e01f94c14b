{{
    config(
        tags=['post_scoring'],
        indexes=[
            {'columns': ['customer_id'], 'unique': true},
        ],
    )
}}

-- The customers a daily run recomputes in the as-of models built after scoring (customer_segments,
-- int_customer_360_assembled): those of int_customers_affected_as_of (with its reasons) plus
--   scores:           a score written since the run began (var dbt_tests_since) or after the newest score
--                     customer_segments holds (scores written after the previous post-scoring build, e.g. by
--                     a scoring run after it), or dated in (P, C], the previous and this run's as-of dates
--                     (int_as_of_date): the customer's latest score changed; a score of a customer id since
--                     merged away counts for the surviving id
--   as_of_knowledge:  a knowledge item observed in [end of P, end of C): it enters customer_360's latest items
-- Without the var (the weekly full run, a hand-run build) the models recompute everyone anyway.

with

affected as (

    select * from {{ ref('int_customers_affected_as_of') }}

),

as_of_dates as (

    select * from {{ ref('int_as_of_date') }}

),

customer_scores as (

    select * from {{ ref('stg_scoring__customer_scores') }}

),

customer_id_merges as (

    select * from {{ ref('stg_identity__customer_id_merges') }}

),

knowledge as (

    select * from {{ ref('customer_knowledge') }}

),

{#- customer_segments as it stands before this run rebuilds it (not a ref: it follows this list) -#}
{%- set segments = existing_relation('marts', 'customer_segments') %}

changed_scores as (

    select customer_scores.customer_id
    from customer_scores
    where
        customer_scores.scored_at >= {{ changed_since_timestamp() }}
        {% if segments is not none -%}
            or customer_scores.scored_at > (
                select coalesce(max(previous_segments.scored_at), cast('-infinity' as timestamptz))
                from marts.customer_segments as previous_segments
            )
        {%- else -%}
            or true
        {%- endif %}
        or (
            customer_scores.as_of_date > (select as_of_dates.previous_as_of_date from as_of_dates)
            and customer_scores.as_of_date <= (select as_of_dates.as_of_date from as_of_dates)
        )

),

changes as (

    -- the reasons int_customers_affected_as_of gives, kept: customer_segments, which reads no delivery or
    -- campaign response, does not recompute the customers listed only for those
    {{ changes_listed() }}
    union all
    select
        customer_id,
        'scores' as change
    from changed_scores
    union all
    select
        customer_id_merges.new_customer_id as customer_id,
        'scores' as change
    from changed_scores
    inner join customer_id_merges
        on changed_scores.customer_id = customer_id_merges.old_customer_id
    union all
    select
        customer_id,
        'as_of_knowledge' as change
    from knowledge
    where
        observed_at >= (
            select cast(as_of_dates.previous_as_of_date + 1 as timestamp) at time zone 'UTC' from as_of_dates
        )
        and observed_at < {{ as_of_cutoff() }}

),

final as (

    {{ customers_with_changes() }}

)

select * from final
