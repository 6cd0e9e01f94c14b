{{ affected_customers_config(indexes=[{'columns': ['customer_id'], 'unique': true}], changes=record_changes()) }}

-- The golden record: for each customer, the surviving (rank 1) value of every canonical attribute.
-- Incremental: a daily run pivots only the customers whose records changed (record_changes(),
-- macros/affected_customers.sql).

with

ranked_attributes as (

    select * from {{ ref('int_customer_attributes_ranked') }}
    {{ only_affected_customers(changes=record_changes()) }}

),

surviving_values as (

    select * from ranked_attributes
    where is_surviving_value

),

final as (

    select
        customer_id,
        {% for name, column, type in golden_record_attributes() -%}
            cast(max(attribute_value) filter (where attribute_name = '{{ name }}') as {{ type }}) as {{ name }}
            {%- if not loop.last %},{% endif %}
        {% endfor %}
    from surviving_values
    group by customer_id

)

select * from final
