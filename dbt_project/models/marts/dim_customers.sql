-- The golden record without direct identifiers: who the customer is (coarse attributes only), how we
-- know them, what they consented to, and how they buy. Names, contact details, national id, street,
-- postcode and exact birth date live in pii.pii_customer_profiles. Customers who asked to be forgotten
-- keep a row (is_forgotten) so that downstream copies can be removed.

with

activity as (

    select * from {{ ref('int_customer_activity_aggregated') }}

),

customer_sources as (

    select * from {{ ref('int_customer_sources_aggregated') }}

),

golden_records as (

    select * from {{ ref('int_customer_attributes_pivoted') }}

),

locations as (

    select * from {{ ref('int_customer_locations_standardised') }}

),

consents as (

    select * from {{ ref('int_customer_consents_pivoted') }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_aggregated') }}

),

categories as (

    select * from {{ ref('int_customer_categories_ranked') }}

),

top_categories as (

    select
        customer_id,
        array_agg(category order by category_rank) as top_product_categories
    from categories
    where category_rank <= {{ var('top_product_categories') }}
    group by customer_id

),

final as (

    select
        activity.customer_id,

        -- golden record (coarse, non-identifying)
        golden_records.gender,
        cast(extract(year from golden_records.birth_date) as int) as birth_year,
        case
            when golden_records.birth_date is null then null
            when age(activity.as_of_date, golden_records.birth_date) < interval '18 years' then 'under_18'
            when age(activity.as_of_date, golden_records.birth_date) < interval '25 years' then '18-24'
            when age(activity.as_of_date, golden_records.birth_date) < interval '35 years' then '25-34'
            when age(activity.as_of_date, golden_records.birth_date) < interval '45 years' then '35-44'
            when age(activity.as_of_date, golden_records.birth_date) < interval '55 years' then '45-54'
            when age(activity.as_of_date, golden_records.birth_date) < interval '65 years' then '55-64'
            else '65_plus'
        end as age_band,
        locations.city,
        locations.city_name_en,
        locations.province,
        locations.province_name_en,
        golden_records.business_type,

        -- how we know the customer
        customer_sources.source_systems,
        customer_sources.sibling_units,
        customer_sources.source_record_count,
        activity.first_seen_at,
        activity.last_seen_at,

        -- consent (latest statement per purpose)
        coalesce(consents.has_marketing_consent, false) as has_marketing_consent,
        coalesce(consents.has_profiling_opt_out, false) as has_profiling_opt_out,
        consents.consent_updated_at,
        erasure_requests.customer_id is not null as is_forgotten,
        erasure_requests.forgotten_at,

        -- behaviour
        activity.order_count,
        activity.total_revenue,
        activity.avg_order_value,
        activity.first_order_at,
        activity.last_order_at,
        activity.preferred_channel,
        coalesce(top_categories.top_product_categories, cast('{}' as text[])) as top_product_categories,
        activity.interaction_count,
        activity.last_interaction_at,

        activity.as_of_date

    from activity
    left join customer_sources
        on activity.customer_id = customer_sources.customer_id
    left join golden_records
        on activity.customer_id = golden_records.customer_id
    left join locations
        on activity.customer_id = locations.customer_id
    left join consents
        on activity.customer_id = consents.customer_id
    left join erasure_requests
        on activity.customer_id = erasure_requests.customer_id
    left join top_categories
        on activity.customer_id = top_categories.customer_id

)

select * from final
