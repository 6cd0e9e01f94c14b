with

source as (

    select * from {{ source('forms', 'submissions') }}
    where {{ only_loaded_batches() }}

),

latest_versions as (

    select
        *,
        row_number() over (
            partition by submission_id
            order by _loaded_at desc, _row_number desc
        ) as version_number
    from source
    where submission_id is not null

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
        case when rating between 1 and 5 then rating end as rating,
        consent_marketing as is_marketing_consent_granted,
        consent_profiling as is_profiling_consent_granted,

        -- canonical customer fields
        {{ normalized_customer_fields() }},
        signup_date,
        extras,

        -- timestamps
        submitted_at,
        _loaded_at as loaded_at

    from latest_versions
    where version_number = 1

)

select * from final
