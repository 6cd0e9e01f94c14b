{{
    affected_customers_config(
        indexes=[{'columns': ['customer_id']}],
        affected='int_customers_affected_as_of',
        changes=category_changes(),
    )
}}

-- What each customer buys, by product category, as of the as-of date: revenue order lines only,
-- ranked by quantity bought, then revenue, then name.
-- Incremental: a daily run recomputes only the customers int_customers_affected_as_of lists for a change of
-- their order lines (category_changes(), macros/affected_customers.sql): a day's deliveries, interactions and
-- forms leave them as they are (the day after the weekly run, its deliveries list most customers).

with

order_items as (

    select * from {{ ref('int_order_items_unioned') }}
    {{ only_affected_customers(affected='int_customers_affected_as_of', changes=category_changes()) }}

),

known_revenue_items as (

    select * from order_items
    where
        is_revenue_order
        and customer_id is not null
        and ordered_at < {{ as_of_cutoff() }}

),

per_category as (

    select
        customer_id,
        category,
        count(distinct order_id) as order_count,
        sum(quantity) as item_quantity,
        sum(line_amount) as revenue,
        max(ordered_at) as last_ordered_at
    from known_revenue_items
    group by customer_id, category

),

final as (

    select
        *,
        round(cast(item_quantity as numeric) / nullif(sum(item_quantity) over (partition by customer_id), 0), 4)
            as item_quantity_share,
        row_number() over (
            partition by customer_id
            order by item_quantity desc, revenue desc nulls last, category asc
        ) as category_rank
    from per_category

)

select * from final
