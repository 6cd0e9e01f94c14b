{{ incremental_fact_config('submission_id') }}

-- Web form submissions, without the personal fields typed into them (see pii.pii_source_identities).
-- Incremental (macros/incremental_facts.sql): a submission is re-written when a version of it reached
-- staging since the last run, when its customer was re-attributed, or when it lost its customer.

with

form_submissions as (

    select * from {{ ref('stg_forms__submissions') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

joined as (

    select
        form_submissions.submission_id,
        record_clusters.customer_id,
        form_submissions.form_type,
        case
            when form_submissions.order_ref ~ '^[0-9]+$' then 'orders:' || form_submissions.order_ref
        end as order_id,
        form_submissions.rating,
        form_submissions.product_interest is not null as has_product_interest,
        form_submissions.message is not null as has_message,
        form_submissions.customer_ref is not null as has_customer_ref,
        form_submissions.is_marketing_consent_granted,
        form_submissions.is_profiling_consent_granted,
        form_submissions.submitted_at,
        cast(form_submissions.submitted_at at time zone 'UTC' as date) as submitted_date,
        form_submissions.loaded_at,
        form_submissions.staged_at,
        record_clusters.resolved_at as customer_resolved_at
    from form_submissions
    left join record_clusters
        on {{ same_source_record('form_submissions', 'record_clusters') }}

),

final as (

    select * from joined
    {{ incremental_fact_filter('submission_id') }}

)

select * from final
