-- Customers who asked to be forgotten (an `erasure_request` web form resolved to them), whatever the
-- as-of date: an erasure request is never undone. Their personal data leaves the pii vault and the
-- knowledge repository; dim_customers keeps a row flagged is_forgotten so exports remove them downstream.

with

form_submissions as (

    select * from {{ ref('stg_forms__submissions') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

final as (

    select
        record_clusters.customer_id,
        min(form_submissions.submitted_at) as forgotten_at,
        count(*) as erasure_request_count
    from form_submissions
    inner join record_clusters
        on {{ same_source_record('form_submissions', 'record_clusters') }}
    where form_submissions.form_type = 'erasure_request'
    group by record_clusters.customer_id

)

select * from final
