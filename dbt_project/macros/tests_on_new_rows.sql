{#-
    dbt tests on the rows a daily run wrote, the whole table weekly.

    A test on a large table opts in with a `where` config naming the placeholder __ckp_tests_since__, e.g.
    `where: "staged_at >= __ckp_tests_since__ or customer_resolved_at >= __ckp_tests_since__"`. dbt renders a
    yml `where` at parse time, without project macros, so the placeholder is expanded here, when the test
    runs (dbt's documented way: override get_where_subquery):

    * `changed_since()` set (var `dbt_tests_since` or CKP_DBT_TESTS_SINCE; a daily run: the warehouse clock
      when the run started, crm_knowledge.run_mode): the placeholder becomes that timestamp, and the test
      reads only the rows written since (facts: staged_at / customer_resolved_at are indexed);
    * empty or unset (the weekly full run, a hand-run `dbt build`): the test reads the whole table.

    Uniqueness stays a whole-table guarantee: the facts' keys carry unique indexes, so their `unique` tests
    take no `where`. A `where` without the placeholder behaves as in dbt.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set placeholder = '__ckp_tests_since__' -%}
    {%- if where and placeholder in where -%}
        {%- set since = changed_since() -%}
        {%- if not since -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set where = where | replace(placeholder, "cast(" ~ dbt.string_literal(dbt.escape_single_quotes(since)) ~ " as timestamptz)") -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
    {%- do return(dbt.default__get_where_subquery(relation)) -%}
{%- endmacro %}
