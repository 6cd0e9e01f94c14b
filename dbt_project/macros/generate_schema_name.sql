{#-
    One layer = one schema, named exactly like the layer (staging, intermediate, marts, pii, snapshots,
    seeds). dbt's default would prefix the target schema ("dbt_staging"); here a configured schema is used
    as-is, and only objects without one fall back to the target schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
