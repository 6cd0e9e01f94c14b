{%- set staged_since = newest_in_this('staged_at') if is_incremental() else none -%}
{{
    config(
        materialized='incremental',
        unique_key='order_id',
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['order_item_id'], 'unique': true},
            {'columns': ['order_id']},
            {'columns': ['product_id']},
            {'columns': ['customer_id']},
            {'columns': ['staged_at']},
            {'columns': ['customer_resolved_at']},
        ],
        post_hook=["{{ delete_facts_deleted_at_source([['order_item_id', 'order_items'], ['order_id', 'orders']]) }}"],
    )
}}

-- depends_on: {{ ref('stg_orders__deletions') }}

-- Order lines of the operational database and of shops' file exports (`items` = `sku:qty|sku:qty`).
-- Exported lines carry no amount: the order's amount is allocated over its lines in proportion to
-- their list value (quantity x current unit price), and flagged as estimated.
-- Incremental, order by order (delete+insert on order_id: an exported order re-staged with fewer lines loses
-- the others): an order's lines are re-written when its row in int_orders_unioned (built just before) was
-- staged or (re-)attributed since the newest line held here (a line, the order or its export staged; identity
-- moved its buyer), when its buyer left identity (the order has no customer any more, its lines still do), or
-- when one of its products was staged since. Lines and orders deleted at the source are deleted (post-hook).
-- A product deleted at the source stays in stg_orders__products (flagged): its lines keep it and its category.
-- Not seen until the weekly full refresh: a product added later under a SKU an exported line named before (the
-- line has no product to probe by).

with

-- the orders whose lines to re-write
changed_orders as (

    {%- if is_incremental() %}
        select changed.order_id
        from {{ ref('int_orders_unioned') }} as changed
        where
            changed.staged_at > {{ staged_since }}
            or changed.customer_resolved_at > {{ newest_in_this('customer_resolved_at') }}
        union
        -- the buyer left identity: the order has no customer any more, its lines still name one
        select existing.order_id
        from {{ this }} as existing
        where
            existing.customer_id is not null
            and existing.order_id in (
                select unattributed.order_id
                from {{ ref('int_orders_unioned') }} as unattributed
                where unattributed.customer_id is null
            )
        union
        select existing.order_id
        from {{ this }} as existing
        where
            existing.product_id in (
                select changed_products.product_id
                from {{ ref('stg_orders__products') }} as changed_products
                where changed_products.staged_at > {{ staged_since }}
            )
    {%- else %}
        {{ no_rows({'order_id': 'text'}) }}
    {%- endif %}

),

orders as (

    select * from {{ ref('int_orders_unioned') }}
    {%- if is_incremental() %}
        where order_id in (select changed_orders.order_id from changed_orders)
    {%- endif %}

),

order_items as (

    select * from {{ ref('stg_orders__order_items') }}
    {%- if is_incremental() %}
        -- by the staged key (indexed), not by the key built here
        where
            order_id in (
                select cast(orders.source_order_id as int) from orders
                where orders.order_source = 'orders'
            )
    {%- endif %}

),

products as (

    select * from {{ ref('stg_orders__products') }}

),

-- the product a shop export's SKU names: one per SKU, the one the source still holds when a SKU deleted at
-- the source was given to a new product
products_by_sku as (

    select distinct on (sku) *
    from products
    where sku is not null
    order by sku asc, is_deleted_at_source asc, updated_at desc nulls last, product_id desc

),

exported_orders as (

    select * from {{ ref('stg_order_exports__orders') }}
    {%- if is_incremental() %}
        where
            (shop, shop_order_id) in (
                select
                    orders.shop,
                    orders.source_order_id
                from orders
                where orders.order_source = 'order_export'
            )
    {%- endif %}

),

database_items as (

    select
        'orders:' || order_items.order_item_id as order_item_id,
        'orders:' || order_items.order_id as order_id,
        order_items.product_id,
        order_items.quantity,
        order_items.unit_price,
        order_items.line_amount,
        false as is_line_amount_estimated,
        order_items.updated_at,
        order_items.loaded_at,
        order_items.staged_at
    from order_items

),

export_item_texts as (

    select
        exported_orders.shop,
        exported_orders.shop_order_id,
        exported_orders.total_amount,
        exported_orders.loaded_at,
        exported_orders.staged_at,
        item_texts.item_text,
        item_texts.item_number
    from exported_orders
    cross join
        lateral
        unnest(string_to_array(exported_orders.items, '|'))
        with ordinality as item_texts (item_text, item_number)
    where nullif(btrim(item_texts.item_text), '') is not null

),

export_items_parsed as (

    select
        export_item_texts.*,
        upper(btrim(split_part(export_item_texts.item_text, ':', 1))) as sku,
        case
            when btrim(split_part(export_item_texts.item_text, ':', 2)) ~ '^[0-9]+$'
                then cast(btrim(split_part(export_item_texts.item_text, ':', 2)) as int)
            else 1
        end as quantity
    from export_item_texts

),

export_items_priced as (

    select
        export_items_parsed.*,
        products.product_id,
        products.unit_price,
        export_items_parsed.quantity * products.unit_price as list_amount,
        sum(export_items_parsed.quantity * products.unit_price) over (
            partition by export_items_parsed.shop, export_items_parsed.shop_order_id
        ) as order_list_amount,
        -- every line's amount depends on the prices of all lines of its order
        max(products.staged_at) over (
            partition by export_items_parsed.shop, export_items_parsed.shop_order_id
        ) as order_products_staged_at
    from export_items_parsed
    left join products_by_sku as products
        on export_items_parsed.sku = products.sku

),

export_items as (

    select
        'export:' || shop || ':' || shop_order_id || ':' || item_number as order_item_id,
        'export:' || shop || ':' || shop_order_id as order_id,
        product_id,
        quantity,
        unit_price,
        case
            when order_list_amount > 0
                then round(total_amount * list_amount / order_list_amount, 2)
        end as line_amount,
        true as is_line_amount_estimated,
        loaded_at as updated_at,
        loaded_at,
        greatest(staged_at, order_products_staged_at) as staged_at
    from export_items_priced

),

unioned as (

    select * from database_items
    union all
    select * from export_items

),

final as (

    select
        unioned.order_item_id,
        unioned.order_id,
        orders.customer_id,
        unioned.product_id,
        products.sku,
        coalesce(products.category, 'uncategorised') as category,
        unioned.quantity,
        unioned.unit_price,
        unioned.line_amount,
        unioned.is_line_amount_estimated,
        orders.is_revenue_order,
        orders.ordered_at,
        orders.order_date,
        greatest(unioned.updated_at, orders.updated_at, products.updated_at) as updated_at,
        greatest(unioned.loaded_at, orders.loaded_at, products.loaded_at) as loaded_at,
        greatest(unioned.staged_at, orders.staged_at, products.staged_at) as staged_at,
        orders.customer_resolved_at
    from unioned
    inner join orders
        on unioned.order_id = orders.order_id
    left join products
        on unioned.product_id = products.product_id

)

select * from final
