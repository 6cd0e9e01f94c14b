-- Every complaint a customer made (complaint web forms; contact-centre interactions filed as complaints),
-- with whether it is still open: a complaint is closed when it was itself resolved on contact, or when a
-- later interaction with the same customer ended `resolved`.

with

form_submissions as (

    select * from {{ ref('int_form_submissions_resolved') }}

),

-- only the columns used: read twice, so PostgreSQL materialises it
interactions as (

    select
        interaction_id,
        customer_id,
        outcome,
        is_complaint,
        is_resolved,
        occurred_at
    from {{ ref('int_interactions_classified') }}

),

form_complaints as (

    select
        'forms' as source,
        submission_id as source_record_id,
        customer_id,
        false as is_resolved_on_contact,
        submitted_at as complained_at
    from form_submissions
    where form_type = 'complaint' and customer_id is not null

),

contact_complaints as (

    select
        'contacts' as source,
        interaction_id as source_record_id,
        customer_id,
        is_resolved as is_resolved_on_contact,
        occurred_at as complained_at
    from interactions
    where is_complaint and customer_id is not null

),

complaints as (

    select * from form_complaints
    union all
    select * from contact_complaints

),

resolutions as (

    select
        customer_id,
        occurred_at as resolved_at
    from interactions
    where outcome = 'resolved' and customer_id is not null

),

final as (

    select
        md5(concat_ws('|', complaints.source, complaints.source_record_id)) as complaint_id,
        complaints.customer_id,
        complaints.source,
        complaints.source_record_id,
        complaints.complained_at,
        case
            when complaints.is_resolved_on_contact then complaints.complained_at
            else min(resolutions.resolved_at)
        end as resolved_at
    from complaints
    left join resolutions
        on
            complaints.customer_id = resolutions.customer_id
            and resolutions.resolved_at > complaints.complained_at
    group by
        complaints.source,
        complaints.source_record_id,
        complaints.customer_id,
        complaints.is_resolved_on_contact,
        complaints.complained_at

)

select * from final
