{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{{ delete_affected_customers() }}",
        indexes=[
            {'columns': ['customer_id'], 'unique': true},
        ],
    )
}}
-- depends_on: {{ ref('int_customers_affected') }}

-- The golden record: for each customer, the surviving (rank 1) value of every canonical attribute.
-- Incremental: a daily run pivots only the affected customers (macros/affected_customers.sql).

with

ranked_attributes as (

    select * from {{ ref('int_customer_attributes_ranked') }}
    {{ only_affected_customers() }}

),

surviving_values as (

    select * from ranked_attributes
    where is_surviving_value

),

final as (

    select
        customer_id,
        max(attribute_value) filter (where attribute_name = 'first_name') as first_name,
        max(attribute_value) filter (where attribute_name = 'last_name') as last_name,
        max(attribute_value) filter (where attribute_name = 'full_name') as full_name,
        max(attribute_value) filter (where attribute_name = 'email') as email,
        max(attribute_value) filter (where attribute_name = 'phone') as phone,
        max(attribute_value) filter (where attribute_name = 'national_id') as national_id,
        cast(max(attribute_value) filter (where attribute_name = 'birth_date') as date) as birth_date,
        max(attribute_value) filter (where attribute_name = 'gender') as gender,
        max(attribute_value) filter (where attribute_name = 'street') as street,
        max(attribute_value) filter (where attribute_name = 'city') as city,
        max(attribute_value) filter (where attribute_name = 'province') as province,
        max(attribute_value) filter (where attribute_name = 'postcode') as postcode,
        max(attribute_value) filter (where attribute_name = 'company') as company,
        max(attribute_value) filter (where attribute_name = 'business_type') as business_type
    from surviving_values
    group by customer_id

)

select * from final
