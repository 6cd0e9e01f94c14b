-- Every consent statement a customer made, per purpose: web forms (consent_marketing / consent_profiling;
-- null = not asked on that form, so no event), an erasure request (withdraws both), and sibling units'
-- files when they carry consent flags.

with

-- import only the columns used: the CTEs are read several times, so PostgreSQL materialises them and
-- would otherwise carry every column of the staging tables through each read
form_submissions as (

    select
        source_system,
        source_record_id,
        form_type,
        is_marketing_consent_granted,
        is_profiling_consent_granted,
        submitted_at
    from {{ ref('stg_forms__submissions') }}

),

sibling_customers as (

    select
        source_system,
        source_record_id,
        is_marketing_consent_granted,
        is_profiling_consent_granted,
        loaded_at
    from {{ ref('stg_siblings__customers') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

-- consent flags as stated: on a form when submitted, in a sibling unit's file as of its load
stated_flags as (

    select
        source_system,
        source_record_id,
        is_marketing_consent_granted,
        is_profiling_consent_granted,
        submitted_at as occurred_at
    from form_submissions

    union all

    select
        source_system,
        source_record_id,
        is_marketing_consent_granted,
        is_profiling_consent_granted,
        loaded_at as occurred_at
    from sibling_customers

),

-- one event per purpose asked about
stated_events as (

    select
        stated_flags.source_system,
        stated_flags.source_record_id,
        statements.purpose,
        statements.is_granted,
        stated_flags.occurred_at
    from stated_flags
    cross join
        lateral (
            values
            ('marketing', stated_flags.is_marketing_consent_granted),
            ('profiling', stated_flags.is_profiling_consent_granted)
        ) as statements (purpose, is_granted)
    where statements.is_granted is not null

),

erasure_events as (

    select
        form_submissions.source_system,
        form_submissions.source_record_id,
        purposes.purpose,
        false as is_granted,
        form_submissions.submitted_at as occurred_at
    from form_submissions
    cross join (values ('marketing'), ('profiling')) as purposes (purpose)
    where form_submissions.form_type = 'erasure_request'

),

unioned as (

    select * from stated_events
    union all
    select * from erasure_events

),

final as (

    select
        md5(
            concat_ws('|', unioned.source_system, unioned.source_record_id, unioned.purpose)
        ) as consent_event_id,
        record_clusters.customer_id,
        unioned.purpose,
        unioned.is_granted,
        unioned.occurred_at,
        unioned.source_system as source,
        unioned.source_record_id
    from unioned
    inner join record_clusters
        on {{ same_source_record('unioned', 'record_clusters') }}

)

select * from final
