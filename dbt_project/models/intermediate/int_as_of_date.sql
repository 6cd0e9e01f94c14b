-- depends_on: {{ ref('int_customers_affected_as_of') }}
-- depends_on: {{ ref('int_customer_activity_aggregated') }}
-- depends_on: {{ ref('int_customer_categories_ranked') }}
-- depends_on: {{ ref('int_customer_consents_pivoted') }}
-- depends_on: {{ ref('int_customers_described') }}

-- The as-of date the as-of models were last built for (one row), and the one before. Built after every
-- as-of model of post_identity: int_customers_affected_as_of reads the previous row (macro
-- previous_as_of_date) to list the customers the move from that date to this run's crosses a boundary; a
-- run that fails before this model keeps the previous date, so its retry lists the same customers.
-- int_customers_affected_scored (post_scoring) reads both dates.

with

final as (

    select
        {{ as_of_date() }} as as_of_date,
        {{ previous_as_of_date() }} as previous_as_of_date

)

select * from final
