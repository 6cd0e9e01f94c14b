{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [['submission_id', 'btrim(submission_id)']] -%}

{{
    config(
        materialized='incremental',
        unique_key=staging_unique_key(record_key),
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=staging_indexes(record_key),
        post_hook=[staging_delete_hook('forms', 'submissions', record_key)],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the submissions touched since the
-- last run, each from all of its loaded raw versions, so the result equals a full build. The key is the
-- trimmed id (the id staging outputs), in the full build too.

with

{{ latest_loaded_versions(source('forms', 'submissions'), record_key) }},

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
        case when rating between 1 and 5 then rating end as rating,
        consent_marketing as is_marketing_consent_granted,
        consent_profiling as is_profiling_consent_granted,

        -- canonical customer fields
        {{ normalized_customer_fields() }},
        signup_date,
        extras,
        -- values of identifier kinds declared in config/identity.yml, as received ({"<kind>": value})
        identifiers,

        -- timestamps
        submitted_at,
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where version_number = 1

)

select * from final
