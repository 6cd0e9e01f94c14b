-- Consent history: every consent statement of every resolved customer, oldest first per customer.

with

consent_events as (

    select * from {{ ref('int_consent_events_unioned') }}

),

final as (

    select
        consent_event_id,
        customer_id,
        purpose,
        is_granted,
        source,
        source_record_id,
        occurred_at,
        cast(occurred_at at time zone 'UTC' as date) as occurred_date
    from consent_events

)

select * from final
