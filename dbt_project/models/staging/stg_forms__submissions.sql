{%- set record_key = [['submission_id', 'btrim(submission_id)']] -%}
{{ incremental_staging_config('forms', 'submissions', record_key) }}

with

{{ latest_loaded_versions(source('forms', 'submissions'), record_key, as_received=true) }},

converted as (

    -- text as received -> typed values (macros/source_values.sql); the latest version of each key only
    select
        *,
        {{ source_date('birth_date') }} as birth_date_value,
        {{ source_date('signup_date') }} as signup_date_value,
        util.parse_timestamp(submitted_at) as submitted_at_value,
        util.parse_integer(rating) as rating_value
    {{ current_versions() }}

),

final as (

    select
        -- ids
        btrim(submission_id) as submission_id,
        'forms' as source_system,
        btrim(submission_id) as source_record_id,
        nullif(regexp_replace(util.ascii_digits(customer_ref), '\s', '', 'g'), '') as customer_ref,
        nullif(regexp_replace(util.ascii_digits(order_ref), '\s', '', 'g'), '') as order_ref,

        -- submission
        lower(btrim(form_type)) as form_type,
        {{ clean_text('product_interest') }} as product_interest,
        {{ clean_text('message') }} as message,
        case when rating_value between 1 and 5 then rating_value end as rating,
        util.parse_yes_no(consent_marketing) as is_marketing_consent_granted,
        util.parse_yes_no(consent_profiling) as is_profiling_consent_granted,

        -- canonical customer fields
        {{ normalized_customer_fields(birth_date='birth_date_value') }},
        signup_date_value as signup_date,
        extras,
        -- values of identifier kinds declared in config/identity.yml, as received ({"<kind>": value})
        identifiers,

        -- timestamps
        submitted_at_value as submitted_at,
        {{ staging_times() }}

    from converted

)

select * from final
