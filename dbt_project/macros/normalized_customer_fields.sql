{#-
    The canonical customer fields of a source record (docs/data_contracts.md), typed and normalised the
    same way for every customer-bearing source: a display form (Persian letters and digits unified,
    trimmed) for golden records, and the normalised identifiers identity resolution compares.
    Expects the canonical raw columns in scope; `has_full_name=false` for sources without full_name,
    `has_address_details=false` for sources without house_number / address_line2; `birth_date`: the column
    holding the birth date as a date (a file source's converted value, macros/source_values.sql).
-#}
{% macro normalized_customer_fields(has_full_name=true, has_address_details=true, birth_date='birth_date') -%}
    {%- set full_name = 'full_name' if has_full_name else 'cast(null as text)' -%}
    {%- set house_number = 'house_number' if has_address_details else 'cast(null as text)' -%}
    {%- set address_line2 = 'address_line2' if has_address_details else 'cast(null as text)' -%}
        {{ clean_text('first_name') }} as first_name,
        {{ clean_text('last_name') }} as last_name,
        coalesce(
            {{ clean_text(full_name) }},
            nullif(concat_ws(' ', {{ clean_text('first_name') }}, {{ clean_text('last_name') }}), '')
        ) as full_name,
        util.normalize_name(first_name) as first_name_norm,
        util.normalize_name(last_name) as last_name_norm,
        util.normalize_name(
            coalesce(nullif(btrim({{ full_name }}), ''), concat_ws(' ', first_name, last_name))
        ) as full_name_norm,
        util.normalize_email(email) as email,
        util.normalize_phone(phone) as phone_e164,
        util.normalize_national_id(national_id) as national_id,
        case
            when nullif(btrim(national_id), '') is not null
                then coalesce(util.national_id_is_valid(national_id), false)
        end as is_national_id_valid,
        case
            when {{ birth_date }} >= date '1900-01-01' and {{ birth_date }} <= cast(_loaded_at as date)
                then {{ birth_date }}
        end as birth_date,
        {{ clean_gender('gender') }} as gender,
        {{ clean_text('street') }} as street,
        util.normalize_name(street) as street_norm,
        nullif(lower(regexp_replace(util.ascii_digits({{ house_number }}), '[^[:alnum:]]', '', 'g')), '')
            as house_number,
        {{ clean_text(address_line2) }} as address_line2,
        util.normalize_name({{ address_line2 }}) as address_line2_norm,
        {{ clean_text('city') }} as city,
        util.normalize_name(city) as city_norm,
        {{ clean_text('province') }} as province,
        {{ clean_postcode('postcode') }} as postcode,
        {{ clean_text('company') }} as company,
        {{ clean_text('business_type') }} as business_type
{%- endmacro %}
