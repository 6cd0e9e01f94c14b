{{
    config(
        materialized='view',
    )
}}

-- The golden record without direct identifiers: who the customer is (coarse attributes only), how we
-- know them, what they consented to, and how they buy. Names, contact details, national id, street,
-- postcode and exact birth date live in pii.pii_customer_profiles. Customers who asked to be forgotten
-- keep a row (is_forgotten) so that downstream copies can be removed.
-- A view over int_customers_described (incremental, indexed on customer_id): the age band and the as-of
-- date move with the as-of date for every customer, so they are computed at read time.

with

customers as (

    select * from {{ ref('int_customers_described') }}

),

final as (

    select
        customer_id,

        -- golden record (coarse, non-identifying)
        {{ coarse_golden_record_columns() }},

        -- how we know the customer
        source_systems,
        sibling_units,
        source_record_count,
        first_seen_at,
        last_seen_at,

        -- consent (latest statement per purpose)
        has_marketing_consent,
        has_profiling_opt_out,
        consent_updated_at,
        is_forgotten,
        forgotten_at,

        -- behaviour
        {{ order_history_columns() }},
        interaction_count,
        last_interaction_at,

        {{ as_of_date() }} as as_of_date

    from customers

)

select * from final
