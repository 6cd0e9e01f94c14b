{{
    config(
        tags=['identity_input'],
        indexes=[
            {'columns': ['source_system', 'source_record_id'], 'unique': true},
        ],
    )
}}

-- A table, not a view: survivorship, the pii vault and the identity input all read it, and it is where
-- the util.* normalisation of every source record is paid for, once per run.

with

orders_customers as (

    select * from {{ ref('stg_orders__customers') }}

),

form_submissions as (

    select * from {{ ref('stg_forms__submissions') }}

),

sibling_customers as (

    select * from {{ ref('stg_siblings__customers') }}

),

contact_interactions as (

    select * from {{ ref('stg_contacts__interactions') }}

),

orders_records as (

    select
        source_system,
        source_record_id,
        cast(null as text) as sibling_unit,
        source_record_id as customer_ref,
        first_name,
        last_name,
        full_name,
        first_name_norm,
        last_name_norm,
        full_name_norm,
        email,
        phone_e164,
        national_id,
        birth_date,
        gender,
        street,
        street_norm,
        cast(null as text) as house_number,
        cast(null as text) as address_line2,
        cast(null as text) as address_line2_norm,
        city,
        city_norm,
        province,
        postcode,
        company,
        business_type,
        cast(created_at as date) as signup_date,
        coalesce(created_at, updated_at, loaded_at) as first_seen_at,
        coalesce(updated_at, created_at, loaded_at) as last_seen_at,
        cast(null as jsonb) as identifiers,
        staged_at
    from orders_customers

),

form_records as (

    select
        source_system,
        source_record_id,
        cast(null as text) as sibling_unit,
        customer_ref,
        first_name,
        last_name,
        full_name,
        first_name_norm,
        last_name_norm,
        full_name_norm,
        email,
        phone_e164,
        national_id,
        birth_date,
        gender,
        street,
        street_norm,
        house_number,
        address_line2,
        address_line2_norm,
        city,
        city_norm,
        province,
        postcode,
        company,
        business_type,
        signup_date,
        coalesce(submitted_at, loaded_at) as first_seen_at,
        coalesce(submitted_at, loaded_at) as last_seen_at,
        identifiers,
        staged_at
    from form_submissions

),

sibling_records as (

    select
        source_system,
        source_record_id,
        sibling_unit,
        cast(null as text) as customer_ref,
        first_name,
        last_name,
        full_name,
        first_name_norm,
        last_name_norm,
        full_name_norm,
        email,
        phone_e164,
        national_id,
        birth_date,
        gender,
        street,
        street_norm,
        house_number,
        address_line2,
        address_line2_norm,
        city,
        city_norm,
        province,
        postcode,
        company,
        business_type,
        signup_date,
        coalesce(cast(signup_date as timestamp) at time zone 'UTC', loaded_at) as first_seen_at,
        loaded_at as last_seen_at,
        identifiers,
        staged_at
    from sibling_customers

),

contact_records as (

    select
        source_system,
        source_record_id,
        cast(null as text) as sibling_unit,
        customer_ref,
        cast(null as text) as first_name,
        cast(null as text) as last_name,
        full_name,
        cast(null as text) as first_name_norm,
        cast(null as text) as last_name_norm,
        full_name_norm,
        email,
        phone_e164,
        cast(null as text) as national_id,
        cast(null as date) as birth_date,
        cast(null as text) as gender,
        cast(null as text) as street,
        cast(null as text) as street_norm,
        cast(null as text) as house_number,
        cast(null as text) as address_line2,
        cast(null as text) as address_line2_norm,
        cast(null as text) as city,
        cast(null as text) as city_norm,
        cast(null as text) as province,
        cast(null as text) as postcode,
        cast(null as text) as company,
        cast(null as text) as business_type,
        cast(null as date) as signup_date,
        coalesce(occurred_at, loaded_at) as first_seen_at,
        coalesce(occurred_at, loaded_at) as last_seen_at,
        cast(null as jsonb) as identifiers,
        staged_at
    from contact_interactions

),

unioned as (

    select * from orders_records
    union all
    select * from form_records
    union all
    select * from sibling_records
    union all
    select * from contact_records

),

final as (

    select
        *,
        num_nonnulls(
            first_name, last_name, full_name, email, phone_e164, national_id, birth_date,
            gender, street, city, province, postcode, company, business_type
        ) as completeness_score
    from unioned

)

select * from final
