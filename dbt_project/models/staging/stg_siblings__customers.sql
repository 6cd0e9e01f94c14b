{%- set record_key = [
    ['source_system', "'sibling:' || lower(btrim(unit))"],
    ['source_record_id', 'btrim(source_record_id)'],
] -%}
{{ incremental_staging_config('siblings', 'customers', record_key) }}

with

{{ latest_loaded_versions(source('siblings', 'customers'), record_key, as_received=true) }},

converted as (

    -- text as received -> typed values (macros/source_values.sql); the latest version of each key only
    select
        *,
        {{ source_date('birth_date') }} as birth_date_value,
        {{ source_date('signup_date') }} as signup_date_value
    {{ current_versions() }}

),

final as (

    select
        -- ids
        'sibling:' || lower(btrim(unit)) as source_system,
        btrim(source_record_id) as source_record_id,
        lower(btrim(unit)) as sibling_unit,

        -- canonical customer fields
        {{ normalized_customer_fields(birth_date='birth_date_value') }},
        signup_date_value as signup_date,
        extras,
        -- values of identifier kinds declared in config/identity.yml, as received ({"<kind>": value})
        identifiers,

        -- consent the unit holds, when its file carries it (extras `consent_marketing` / `consent_profiling`)
        util.parse_yes_no(extras ->> 'consent_marketing') as is_marketing_consent_granted,
        util.parse_yes_no(extras ->> 'consent_profiling') as is_profiling_consent_granted,

        -- timestamps
        {{ staging_times() }}

    from converted

)

select * from final
