{#-
    The date customers are described "as of": the `as_of_date` var (YYYY-MM-DD), else the environment variable
    CKP_DBT_AS_OF_DATE (the DAGs' dbt tasks: a var that changes every day would make each day's first task parse
    the whole project again, an environment variable only the files that read it), else current_date. Model
    logic never calls now(): a backfill with --vars '{as_of_date: ...}' reproduces what was knowable at the end
    of that day.
-#}
{% macro as_of_date() -%}
    {%- set value = var('as_of_date', none) -%}
    {%- if value is none -%}
        {%- set value = env_var('CKP_DBT_AS_OF_DATE', '') -%}
    {%- endif -%}
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

{#-
    The as-of date of the previous build of the as-of models, as a SQL date literal ('null' when unknown: no
    build yet). Read from intermediate.int_as_of_date as it stands before this run rebuilds it (that model
    is built after every as-of model of post_identity, so a run that fails before keeps the previous date and
    a retry recomputes the same crossings). Not a ref: int_as_of_date depends on the models that read this.
-#}
{% macro previous_as_of_date() -%}
    {%- set relation = existing_relation(this.schema, 'int_as_of_date') -%}
    {%- if relation is none -%}
        cast(null as date)
    {%- else -%}
        {%- set result = run_query('select max(as_of_date)::text from ' ~ relation) -%}
        {%- set value = result.columns[0].values()[0] if result.rows | length > 0 else none -%}
        {%- if value is none -%}
            cast(null as date)
        {%- else -%}
            cast('{{ value }}' as date)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- Age band of a birth date at an as-of date (dim_customers, customer_360). -#}
{% macro age_band(birth_date, as_of) -%}
    case
        when {{ birth_date }} is null then null
        when age({{ as_of }}, {{ birth_date }}) < interval '18 years' then 'under_18'
        when age({{ as_of }}, {{ birth_date }}) < interval '25 years' then '18-24'
        when age({{ as_of }}, {{ birth_date }}) < interval '35 years' then '25-34'
        when age({{ as_of }}, {{ birth_date }}) < interval '45 years' then '35-44'
        when age({{ as_of }}, {{ birth_date }}) < interval '55 years' then '45-54'
        when age({{ as_of }}, {{ birth_date }}) < interval '65 years' then '55-64'
        else '65_plus'
    end
{%- endmacro %}

{#- A relation of this database as it stands before this run rebuilds it, or none (not built yet, or parsing):
    for a model that reads the previous state of a model that depends on it, so cannot ref it. -#}
{% macro existing_relation(schema, identifier) -%}
    {{- return(adapter.get_relation(database=this.database, schema=schema, identifier=identifier)
               if execute else none) -}}
{%- endmacro %}
