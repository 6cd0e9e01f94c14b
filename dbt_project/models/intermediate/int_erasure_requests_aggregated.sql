-- Customers who asked to be forgotten (an `erasure_request` web form resolved to them), whatever the
-- as-of date: an erasure request is never undone. Their personal data leaves the pii vault and the
-- knowledge repository; dim_customers keeps a row flagged is_forgotten so exports remove them downstream.

with

form_submissions as (

    select * from {{ ref('int_form_submissions_resolved') }}

),

final as (

    select
        customer_id,
        min(submitted_at) as forgotten_at,
        count(*) as erasure_request_count
    from form_submissions
    where form_type = 'erasure_request' and customer_id is not null
    group by customer_id

)

select * from final
