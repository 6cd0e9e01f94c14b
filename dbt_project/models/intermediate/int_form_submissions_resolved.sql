{{ config(materialized='ephemeral') }}

-- Web form submissions with the customer their record resolved to: the one place a submission meets its
-- customer (stg_identity__record_clusters on the record key). customer_id is null while the submission's
-- record is unresolved; a model that wants resolved forms only filters `customer_id is not null`.
-- Ephemeral: inlined into each reader's query, which filters it (the affected customers, a form type, a
-- time window), so a daily run stores and rebuilds nothing here; the personal fields stay in staging
-- (only the free text the knowledge repository reads is carried).

with

form_submissions as (

    select * from {{ ref('stg_forms__submissions') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

final as (

    select
        form_submissions.submission_id,
        record_clusters.customer_id,
        form_submissions.form_type,
        form_submissions.customer_ref,
        form_submissions.order_ref,
        form_submissions.product_interest,
        form_submissions.message,
        form_submissions.rating,
        form_submissions.is_marketing_consent_granted,
        form_submissions.is_profiling_consent_granted,
        form_submissions.submitted_at,
        form_submissions.loaded_at,
        form_submissions.staged_at,
        record_clusters.resolved_at as customer_resolved_at
    from form_submissions
    left join record_clusters
        on {{ same_source_record('form_submissions', 'record_clusters') }}

)

select * from final
