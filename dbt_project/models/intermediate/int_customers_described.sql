{{
    affected_customers_config(
        indexes=[{'columns': ['customer_id'], 'unique': true}],
        affected='int_customers_affected_as_of',
        changes=activity_changes(),
        read_through_views=true,
    )
}}

-- The stored part of dim_customers (the view that adds the age band and the as-of date at read time): the
-- golden record's coarse attributes and its birth date (restricted like every intermediate model; the mart
-- shows only the year and the age band), how we know the customer, consent and behaviour.
-- Incremental: a daily run recomputes only the customers int_customers_affected_as_of lists for
-- activity_changes() (macros/affected_customers.sql): not those listed only for a delivery or a campaign.

with

activity as (

    select * from {{ ref('int_customer_activity_aggregated') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

customer_sources as (

    select * from {{ ref('int_customer_sources_aggregated') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

golden_records as (

    select * from {{ ref('int_customer_attributes_pivoted') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

locations as (

    select * from {{ ref('int_customer_locations_standardised') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

consents as (

    select * from {{ ref('int_customer_consents_pivoted') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_aggregated') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

),

categories as (

    select * from {{ ref('int_customer_categories_ranked') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=activity_changes()) }}

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
        golden_records.birth_date,
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
        activity.last_interaction_at

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
