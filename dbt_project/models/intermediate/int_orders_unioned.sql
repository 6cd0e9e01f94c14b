-- Orders of the operational database and of shops' file exports in one shape, attributed to customers
-- through identity resolution (an order belongs to the customer its orders-database account resolved to).

with

orders as (

    select * from {{ ref('stg_orders__orders') }}

),

order_items as (

    select * from {{ ref('stg_orders__order_items') }}

),

exported_orders as (

    select * from {{ ref('stg_order_exports__orders') }}

),

record_clusters as (

    select * from {{ ref('stg_identity__record_clusters') }}

),

order_item_totals as (

    select
        order_id,
        sum(quantity) as item_quantity,
        max(updated_at) as items_updated_at,
        max(loaded_at) as items_loaded_at,
        max(staged_at) as items_staged_at
    from order_items
    group by order_id

),

database_orders as (

    select
        'orders:' || orders.order_id as order_id,
        'orders' as order_source,
        cast(null as text) as shop,
        cast(orders.order_id as text) as source_order_id,
        cast(orders.orders_customer_id as text) as source_customer_id,
        orders.status,
        orders.channel,
        orders.total_amount,
        orders.currency,
        order_item_totals.item_quantity,
        orders.ordered_at,
        greatest(orders.updated_at, order_item_totals.items_updated_at) as updated_at,
        greatest(orders.loaded_at, order_item_totals.items_loaded_at) as loaded_at,
        greatest(orders.staged_at, order_item_totals.items_staged_at) as staged_at
    from orders
    left join order_item_totals
        on orders.order_id = order_item_totals.order_id

),

shop_orders as (

    select
        'export:' || shop || ':' || shop_order_id as order_id,
        'order_export' as order_source,
        shop,
        shop_order_id as source_order_id,
        customer_source_id as source_customer_id,
        -- a shop exports completed sales only; exports carry no status or channel of their own
        'paid' as status,
        'store' as channel,
        total_amount,
        'IRR' as currency,
        item_quantity,
        cast(order_date as timestamp) at time zone 'UTC' as ordered_at,
        loaded_at as updated_at,
        loaded_at,
        staged_at
    from exported_orders

),

unioned as (

    select * from database_orders
    union all
    select * from shop_orders

),

final as (

    select
        unioned.order_id,
        unioned.order_source,
        unioned.shop,
        unioned.source_order_id,
        unioned.source_customer_id,
        record_clusters.customer_id,
        unioned.status,
        unioned.channel,
        unioned.status not in ('cancelled', 'returned') as is_revenue_order,
        unioned.total_amount,
        unioned.currency,
        unioned.item_quantity,
        unioned.ordered_at,
        cast(unioned.ordered_at at time zone 'UTC' as date) as order_date,
        unioned.updated_at,
        unioned.loaded_at,
        unioned.staged_at,
        record_clusters.resolved_at as customer_resolved_at
    from unioned
    left join record_clusters
        on
            record_clusters.source_system = 'orders'
            and unioned.source_customer_id = record_clusters.source_record_id

)

select * from final
