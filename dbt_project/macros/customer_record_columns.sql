{#-
    The columns every customer-bearing source contributes to int_customer_records_unioned, in one order
    and with one type each (a union needs the same columns in the same order). A source selects them with
    `customer_record_columns(missing=[...], derived={'column': 'expression'})`: a column it has under the
    canonical name is taken as it is, a `missing` one is a typed null, a `derived` one is computed. One list,
    so a new column is added in one place and every branch of the union follows.
-#}
{% macro customer_record_columns(missing=[], derived={}) -%}
    {%- set columns = [
        ('source_system', 'text'), ('source_record_id', 'text'), ('sibling_unit', 'text'),
        ('customer_ref', 'text'),
        ('first_name', 'text'), ('last_name', 'text'), ('full_name', 'text'),
        ('first_name_norm', 'text'), ('last_name_norm', 'text'), ('full_name_norm', 'text'),
        ('email', 'text'), ('phone_e164', 'text'), ('national_id', 'text'), ('birth_date', 'date'),
        ('gender', 'text'),
        ('street', 'text'), ('street_norm', 'text'), ('house_number', 'text'), ('address_line2', 'text'),
        ('address_line2_norm', 'text'), ('city', 'text'), ('city_norm', 'text'), ('province', 'text'),
        ('postcode', 'text'), ('company', 'text'), ('business_type', 'text'),
        ('signup_date', 'date'), ('first_seen_at', 'timestamptz'), ('last_seen_at', 'timestamptz'),
        ('identifiers', 'jsonb'), ('staged_at', 'timestamptz'),
    ] -%}
    {%- for name, type in columns %}
        {% if name in derived -%}
            {{ derived[name] }} as {{ name }}
        {%- elif name in missing -%}
            cast(null as {{ type }}) as {{ name }}
        {%- else -%}
            {{ name }}
        {%- endif %}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
