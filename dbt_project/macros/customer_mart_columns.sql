{#-
    Column groups the customer marts dim_customers and customer_360 both show, in one order, so the two
    describe a customer alike and a column is added to both in one place.
-#}

{#- Who the customer is, coarse and non-identifying (the golden record's names, contact details, national id,
    street, postcode and exact birth date stay in pii.pii_customer_profiles): birth date as year and age band
    at the as-of date. -#}
{% macro coarse_golden_record_columns() -%}
    gender,
    birth_year,
    {{ age_band('birth_date', as_of_date()) }} as age_band,
    city,
    city_name_en,
    province,
    province_name_en,
    business_type
{%- endmacro %}

{#- How the customer buys (int_customer_activity_aggregated). -#}
{% macro order_history_columns() -%}
    order_count,
    total_revenue,
    avg_order_value,
    first_order_at,
    last_order_at,
    preferred_channel,
    top_product_categories
{%- endmacro %}
