{#- The record key, stated once: [staging column, raw expression] pairs (macros/incremental_staging.sql). -#}
{%- set record_key = [['interaction_id', 'btrim(interaction_id)']] -%}

{{
    config(
        materialized='incremental',
        unique_key=staging_unique_key(record_key),
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=staging_indexes(record_key),
        post_hook=[staging_delete_hook('contacts', 'interactions', record_key)],
    )
}}

-- Incremental (macros/incremental_staging.sql): a run recomputes only the interactions touched since the
-- last run, each from all of its loaded raw versions, so the result equals a full build. The key is the
-- trimmed id (the id staging outputs), in the full build too.

with

{{ latest_loaded_versions(source('contacts', 'interactions'), record_key) }},

final as (

    select
        -- ids
        btrim(interaction_id) as interaction_id,
        'contacts' as source_system,
        btrim(interaction_id) as source_record_id,
        nullif(regexp_replace(util.ascii_digits(customer_ref), '\s', '', 'g'), '') as customer_ref,
        nullif(btrim(agent_id), '') as agent_id,

        -- interaction
        lower(btrim(channel)) as channel,
        nullif(lower(btrim(topic)), '') as topic,
        nullif(lower(btrim(outcome)), '') as outcome,
        {{ clean_text('notes') }} as notes,

        -- customer as given in the interaction
        {{ clean_text('customer_name') }} as full_name,
        util.normalize_name(customer_name) as full_name_norm,
        util.normalize_email(email) as email,
        util.normalize_phone(phone) as phone_e164,
        extras,

        -- timestamps
        occurred_at,
        _loaded_at as loaded_at,
        now() as staged_at

    from latest_versions
    where version_number = 1

)

select * from final
