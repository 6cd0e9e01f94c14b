{{
    affected_customers_config(
        indexes=[
            {'columns': ['customer_id']},
            {'columns': ['source_system', 'source_record_id'], 'unique': true},
        ],
        changes=record_changes() + ['forms'],
    )
}}

-- Every resolved source record with the normalised identifiers it carried: which record of which
-- system made us know which customer by which email / phone / national id / declared identifier (passport,
-- loyalty card, ...: config/identity.yml). Customers who asked to
-- be forgotten are left out. Restricted schema.
-- Incremental: a daily run recomputes only the customers whose records changed or who asked to be
-- forgotten (record_changes() and forms, macros/affected_customers.sql).

with

resolved_records as (

    select * from {{ ref('int_customer_records_resolved') }}
    {{ only_affected_customers(changes=record_changes() + ['forms']) }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_aggregated') }}

),

final as (

    select
        resolved_records.customer_id,
        resolved_records.source_system,
        resolved_records.source_record_id,
        resolved_records.first_name_norm,
        resolved_records.last_name_norm,
        resolved_records.full_name_norm,
        resolved_records.email as email_norm,
        resolved_records.phone_e164,
        resolved_records.national_id as national_id_valid,
        resolved_records.birth_date,
        resolved_records.postcode,
        resolved_records.street_norm,
        resolved_records.city_norm,
        resolved_records.identifiers,
        resolved_records.last_seen_at as seen_at
    from resolved_records
    left join erasure_requests
        on resolved_records.customer_id = erasure_requests.customer_id
    where erasure_requests.customer_id is null

)

select * from final
