{%- set record_key = [['interaction_id', 'btrim(interaction_id)']] -%}
{{ incremental_staging_config('contacts', 'interactions', record_key) }}

with

{{ latest_loaded_versions(source('contacts', 'interactions'), record_key, as_received=true) }},

converted as (

    -- text as received -> typed values (macros/source_values.sql); the latest version of each key only
    select
        *,
        util.parse_timestamp(occurred_at) as occurred_at_value
    {{ current_versions() }}

),

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
        occurred_at_value as occurred_at,
        {{ staging_times() }}

    from converted

)

select * from final
