{{ affected_customers_config() }}

-- The customer knowledge repository: one row per thing we know about, heard from, or did for a customer.
--   from   what the customer told us: feedback, complaints, ideas (web forms, contact centre)
--   about  what we know about them: product interest, needs, preferences, life events, purchase patterns
--   for    what we did for them: offers made, campaign contacts (write-back deliveries)
--   from   also how they responded to a campaign they were sent (fct_campaign_responses, treated arm)
-- Customers who asked to be forgotten have none.
-- Free text has e-mail addresses and long digit runs (phones, ids) masked: marts hold no direct PII.
-- Incremental: a daily run recomputes only the affected customers (macros/affected_customers.sql; they
-- include the treated customers of campaigns whose response windows the as-of date still moves).

with

-- the resolved forms: stated here, so the join to the clusters is an inner one and the daily filter reaches
-- the clusters before it
form_submissions as (

    select * from {{ ref('int_form_submissions_resolved') }}
    where
        customer_id is not null
        {{ only_affected_customers(keyword='and') }}

),

interactions as (

    select * from {{ ref('int_interactions_classified') }}
    {{ only_affected_customers() }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}
    {{ only_affected_customers() }}

),

categories as (

    select * from {{ ref('int_customer_categories_ranked') }}
    {{ only_affected_customers() }}

),

activity as (

    select * from {{ ref('int_customer_activity_aggregated') }}
    {{ only_affected_customers() }}

),

communications as (

    select * from {{ ref('stg_scoring__communications') }}
    {{ only_affected_customers() }}

),

exports as (

    select * from {{ ref('stg_audit__exports') }}

),

erasure_requests as (

    select * from {{ ref('int_erasure_requests_aggregated') }}

),

campaign_responses as (

    select * from {{ ref('fct_campaign_responses') }}
    {{ only_affected_customers() }}

),

form_statements as (

    select
        customer_id,
        'from' as flow,
        form_type as kind,
        concat_ws(
            ' ',
            {{ redact_identifiers('message') }},
            '(rating ' || rating || '/5)'
        ) as content,
        'forms' as source,
        submission_id as source_record_id,
        submitted_at as observed_at,
        1.0 as confidence
    from form_submissions
    where
        form_type in ('feedback', 'complaint', 'idea')
        and (message is not null or rating is not null)

),

form_product_interests as (

    select
        customer_id,
        'about' as flow,
        'product_interest' as kind,
        {{ redact_identifiers('product_interest') }} as content,
        'forms' as source,
        submission_id as source_record_id,
        submitted_at as observed_at,
        0.9 as confidence
    from form_submissions
    where product_interest is not null

),

contact_notes as (

    select
        customer_id,
        knowledge_flow as flow,
        knowledge_kind as kind,
        concat_ws(
            ' ',
            coalesce(topic, 'contact') || ':',
            {{ redact_identifiers('notes') }},
            '[' || channel || coalesce(', ' || outcome, '') || ']'
        ) as content,
        'contacts' as source,
        interaction_id as source_record_id,
        occurred_at as observed_at,
        0.8 as confidence
    from interactions
    where customer_id is not null

),

contact_sales as (

    select
        customer_id,
        'for' as flow,
        'offer_made' as kind,
        concat_ws(' ', 'offer accepted on contact:', coalesce(topic, channel)) as content,
        'contacts' as source,
        interaction_id as source_record_id,
        occurred_at as observed_at,
        1.0 as confidence
    from interactions
    where customer_id is not null and outcome = 'sale' and knowledge_kind <> 'offer_made'

),

favourite_categories as (

    select
        categories.customer_id,
        'about' as flow,
        'purchase_pattern' as kind,
        'favourite category: ' || categories.category
        || ' (' || categories.item_quantity || ' items in ' || categories.order_count || ' orders)' as content,
        'orders' as source,
        'category:' || categories.category as source_record_id,
        categories.last_ordered_at as observed_at,
        categories.item_quantity_share as confidence
    from categories
    inner join activity
        on categories.customer_id = activity.customer_id
    where categories.category_rank = 1 and activity.order_count >= 2

),

channel_preferences as (

    select
        customer_id,
        'about' as flow,
        'preference' as kind,
        'prefers ordering via ' || preferred_channel
        || ' (' || round(preferred_channel_share * 100) || '% of ' || order_count || ' orders)' as content,
        'orders' as source,
        'channel:' || preferred_channel as source_record_id,
        last_order_at as observed_at,
        preferred_channel_share as confidence
    from activity
    where order_count >= 2 and preferred_channel is not null

),

deliveries as (

    select
        communications.customer_id,
        'for' as flow,
        case
            when communications.communication_kind = 'offer_made' then 'offer_made'
            else 'campaign_contact'
        end as kind,
        concat_ws(
            ' ',
            communications.change_type,
            coalesce('audience ' || communications.audience, 'segment'),
            'at ' || communications.destination,
            '(' || coalesce(communications.purpose, exports.export_kind) || ')'
        ) as content,
        'export:' || communications.destination as source,
        communications.communication_id as source_record_id,
        communications.communicated_at as observed_at,
        1.0 as confidence
    from communications
    inner join exports
        on communications.export_id = exports.export_id
    inner join (select distinct customer_id from record_clusters) as known_customers
        on communications.customer_id = known_customers.customer_id
    where exports.status = 'delivered'

),

-- campaigns: a treated customer who ordered within a campaign's response window responded to it;
-- one item per campaign, over the longest window observed so far
campaign_response_items as (

    select distinct on (customer_id, campaign_id)
        customer_id,
        'from' as flow,
        'campaign_response' as kind,
        concat_ws(
            ' ',
            'responded to campaign', audience, 'at', destination, 'of', campaign_date || ':',
            order_count, 'order(s),', round(revenue), 'IRR within', observed_days, 'day(s)'
        ) as content,
        'campaign:' || destination as source,
        campaign_id as source_record_id,
        first_ordered_at as observed_at,
        1.0 as confidence
    from campaign_responses
    where arm = 'treated' and has_ordered
    order by customer_id asc, campaign_id asc, window_days desc

),

unioned as (

    select * from form_statements
    union all
    select * from form_product_interests
    union all
    select * from contact_notes
    union all
    select * from contact_sales
    union all
    select * from favourite_categories
    union all
    select * from channel_preferences
    union all
    select * from deliveries
    union all
    select * from campaign_response_items

),

final as (

    select
        md5(
            concat_ws('|', unioned.source, unioned.source_record_id, unioned.customer_id, unioned.kind)
        ) as knowledge_item_id,
        unioned.customer_id,
        unioned.flow,
        unioned.kind,
        unioned.content,
        unioned.source,
        unioned.source_record_id,
        unioned.observed_at,
        cast(round(cast(unioned.confidence as numeric), 2) as numeric(3, 2)) as confidence
    from unioned
    left join erasure_requests
        on unioned.customer_id = erasure_requests.customer_id
    -- a customer who asked to be forgotten keeps no knowledge items
    where erasure_requests.customer_id is null

)

select * from final
