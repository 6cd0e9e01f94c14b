{{
    affected_customers_config(indexes=[
        {'columns': ['customer_id']},
        {'columns': ['source_system', 'source_record_id'], 'unique': true},
    ])
}}

-- Every resolved source record with the normalised identifiers it carried: which record of which
-- system made us know which customer by which email / phone / national id / declared identifier (passport,
-- loyalty card, ...: config/identity.yml). Customers who asked to
-- be forgotten are left out. Restricted schema.
-- Incremental: a daily run recomputes only the affected customers (macros/affected_customers.sql).

with

customer_records as (

    select * from {{ ref('int_customer_records_unioned') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}
    {{ only_affected_customers() }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_aggregated') }}

),

final as (

    select
        record_clusters.customer_id,
        customer_records.source_system,
        customer_records.source_record_id,
        customer_records.first_name_norm,
        customer_records.last_name_norm,
        customer_records.full_name_norm,
        customer_records.email as email_norm,
        customer_records.phone_e164,
        customer_records.national_id as national_id_valid,
        customer_records.birth_date,
        customer_records.postcode,
        customer_records.street_norm,
        customer_records.city_norm,
        customer_records.identifiers,
        customer_records.last_seen_at as seen_at
    from customer_records
    inner join record_clusters
        on {{ same_source_record('customer_records', 'record_clusters') }}
    left join erasure_requests
        on record_clusters.customer_id = erasure_requests.customer_id
    where erasure_requests.customer_id is null

)

select * from final
