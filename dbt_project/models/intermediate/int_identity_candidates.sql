{{
    incremental_record_config(
        tags=['identity_input'],
        post_hook=[delete_records_gone_hook([
            ['int_customer_records_unioned', 'true', none],
        ])],
    )
}}

-- Incremental as int_customer_records_unioned (macros/incremental_facts.sql, incremental_record_config): a
-- candidate is re-written when its record was, and deleted when its record is gone.

with

customer_records as (

    select * from {{ ref('int_customer_records_unioned') }}
    {%- if is_incremental() %}
        where staged_at > {{ newest_in_this('staged_at') }}
    {%- endif %}

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
