{{ affected_customers_config(changes=record_changes() + ['forms']) }}

-- The golden record's personal fields, by the same survivorship rules as dim_customers
-- (int_customer_attributes_ranked). Customers who asked to be forgotten are left out.
-- Restricted schema: grant to privacy-cleared roles only.
-- Incremental: a daily run recomputes only the customers whose records changed or who asked to be
-- forgotten (record_changes() and forms, macros/affected_customers.sql).

with

golden_records as (

    select * from {{ ref('int_customer_attributes_pivoted') }}
    {{ only_affected_customers(changes=record_changes() + ['forms']) }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_aggregated') }}

),

final as (

    select
        golden_records.customer_id,
        golden_records.first_name,
        golden_records.last_name,
        golden_records.full_name,
        golden_records.email,
        golden_records.phone,
        golden_records.national_id,
        golden_records.birth_date,
        golden_records.gender,
        golden_records.street,
        golden_records.postcode,
        golden_records.city,
        golden_records.province,
        golden_records.company
    from golden_records
    left join erasure_requests
        on golden_records.customer_id = erasure_requests.customer_id
    where erasure_requests.customer_id is null

)

select * from final
