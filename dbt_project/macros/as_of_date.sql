{#-
    The date customers are described "as of": the `as_of_date` var (YYYY-MM-DD) or, when unset,
    current_date. Model logic never calls now(): a backfill with --vars '{as_of_date: ...}' reproduces
    what was knowable at the end of that day.
-#}
{% macro as_of_date() -%}
    {%- set value = var('as_of_date', none) -%}
    {%- if value is none or value | string | trim in ('', 'None', 'null') -%}
        current_date
    {%- else -%}
        cast('{{ value | string | trim }}' as date)
    {%- endif -%}
{%- endmacro %}

{#- First instant after the as-of day (UTC): events strictly before it are known as of that date. -#}
{% macro as_of_cutoff() -%}
    (cast({{ as_of_date() }} + 1 as timestamp) at time zone 'UTC')
{%- endmacro %}
