{{ config(materialized='ephemeral') }}

-- Every fact row attributed to a customer (orders, order lines, contact-centre interactions, web forms) with
-- when it happened, when staging last wrote it and when identity resolution last decided its customer: what
-- the lists of affected customers probe (int_customers_affected: staged or re-attributed since the run
-- began; int_customers_affected_as_of: dated between the previous and this as-of day's end). Ephemeral: each
-- list filters it on one of the timestamps, and PostgreSQL pushes that filter into every branch of the union.

with

orders as (

    select * from {{ ref('int_orders_unioned') }}

),

order_items as (

    select * from {{ ref('int_order_items_unioned') }}

),

interactions as (

    select * from {{ ref('int_interactions_classified') }}

),

form_submissions as (

    select * from {{ ref('int_form_submissions_resolved') }}

),

unioned as (

    {% for facts, fact, fact_id, occurred_at in [
        ('orders', 'orders', 'order_id', 'ordered_at'),
        ('order_items', 'order_items', 'order_item_id', 'ordered_at'),
        ('interactions', 'interactions', 'interaction_id', 'occurred_at'),
        ('form_submissions', 'forms', 'submission_id', 'submitted_at'),
    ] -%}
        {{ 'union all' if not loop.first }}
        select
            '{{ fact }}' as fact,
            {{ fact_id }} as fact_id,
            customer_id,
            {{ occurred_at }} as occurred_at,
            staged_at,
            customer_resolved_at
        from {{ facts }}
    {% endfor %}

),

final as (

    select * from unioned
    where customer_id is not null

)

select * from final
