{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [
    ['source_system', "'sibling:' || lower(btrim(unit))"],
    ['source_record_id', 'btrim(source_record_id)'],
] -%}

{{
    config(
        materialized='incremental',
        unique_key=staging_unique_key(record_key),
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=staging_indexes(record_key),
        post_hook=[staging_delete_hook('siblings', 'customers', record_key)],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the records touched since the last
-- run, each from all of its loaded raw versions, so the result equals a full build. The key is the
-- (unit, record id) pair staging outputs, trimmed and lower-cased, in the full build too.

with

{{ latest_loaded_versions(source('siblings', 'customers'), record_key) }},

final as (

    select
        -- ids
        'sibling:' || lower(btrim(unit)) as source_system,
        btrim(source_record_id) as source_record_id,
        lower(btrim(unit)) as sibling_unit,

        -- canonical customer fields
        {{ normalized_customer_fields() }},
        signup_date,
        extras,
        -- values of identifier kinds declared in config/identity.yml, as received ({"<kind>": value})
        identifiers,

        -- consent the unit holds, when its file carries it (extras `consent_marketing` / `consent_profiling`)
        case lower(btrim(extras ->> 'consent_marketing'))
            when 'true' then true when 'yes' then true when '1' then true
            when 'false' then false when 'no' then false when '0' then false
        end as is_marketing_consent_granted,
        case lower(btrim(extras ->> 'consent_profiling'))
            when 'true' then true when 'yes' then true when '1' then true
            when 'false' then false when 'no' then false when '0' then false
        end as is_profiling_consent_granted,

        -- timestamps
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where version_number = 1

)

select * from final
