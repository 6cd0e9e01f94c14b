with

source as (

    select * from {{ source('siblings', 'customers') }}
    where {{ only_loaded_batches() }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by unit, source_record_id
            order by _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where source_record_id is not null

),

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
        _loaded_at as loaded_at

    from latest_versions
    where version_number = 1

)

select * from final
