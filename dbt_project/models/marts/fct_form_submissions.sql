{{ incremental_fact_config('submission_id') }}

-- Web form submissions, without the personal fields typed into them (see pii.pii_source_identities).
-- Incremental (macros/incremental_facts.sql): a submission is re-written when a version of it reached
-- staging since the last run, when its customer was re-attributed, or when it lost its customer.

with

form_submissions as (

    select * from {{ ref('int_form_submissions_resolved') }}

),

final as (

    select
        submission_id,
        customer_id,
        form_type,
        case
            when order_ref ~ '^[0-9]+$' then 'orders:' || order_ref
        end as order_id,
        rating,
        product_interest is not null as has_product_interest,
        message is not null as has_message,
        customer_ref is not null as has_customer_ref,
        is_marketing_consent_granted,
        is_profiling_consent_granted,
        submitted_at,
        cast(submitted_at at time zone 'UTC' as date) as submitted_date,
        {{ incremental_fact_columns() }}
    from form_submissions
    {{ incremental_fact_filter('submission_id') }}

)

select * from final
