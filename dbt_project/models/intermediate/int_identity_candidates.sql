{{
    config(
        tags=['identity_input'],
        indexes=[
            {'columns': ['source_system', 'source_record_id'], 'unique': true},
        ],
    )
}}

with

customer_records as (

    select * from {{ ref('int_customer_records_unioned') }}

),

final as (

    select
        source_system,
        source_record_id,
        first_name_norm,
        last_name_norm,
        full_name_norm,
        email as email_norm,
        phone_e164,
        national_id as national_id_valid,
        birth_date,
        postcode,
        city_norm,
        street_norm,
        house_number,
        address_line2_norm,
        customer_ref,
        last_seen_at as seen_at,
        -- when staging last re-wrote the record: an incremental identity run re-resolves records
        -- re-staged since it last resolved them, even when their source time (seen_at) is old
        staged_at
    from customer_records

)

select * from final
