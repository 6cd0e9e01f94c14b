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

    Uniqueness stays a whole-table guarantee through the unique index on each such key (staging's record keys,
    the facts' keys, the identity input's, the resolved records' and the vault's record keys) or the primary
    key of the table a view shows (identity.record_clusters): the index refuses a duplicate row whenever it is
    written, so the key's `unique` test reads the rows the run wrote, like its row checks, and every row
    weekly. A key with no such guarantee keeps a whole-table test (tests/unit/test_daily_uniqueness_guarantees.py
    fails otherwise). A `where` without a placeholder behaves as in dbt.

    A customer-level model that follows the affected customers (affected_customers_config) rewrites only the
    rows of the customers its list names on a daily run, so its tests can read only those:
    `where: "customer_id in __ckp_recomputed_customers__"` becomes, on a daily run, the customers of the list the
    model follows, for the changes it follows (its meta `follows_customers`, set by affected_customers_config);
    the rows of any other customer are as the last run left and tested them. Only for tests a row of another
    customer cannot make fail: row checks (not null on a column other than customer_id, accepted values) and
    uniqueness of a key that includes customer_id (customer_knowledge's item id hashes it in). A key without
    customer_id (a record's key) needs its unique index: a row of a customer not recomputed can collide with a
    new one.

    A relationships test between two such models (pii_source_identities -> dim_customers) reads the rows of the
    customers recomputed in either: the tested model's list and the list of the model it refers to. A row of
    any other customer was not rewritten, and neither was the row it points to (a parent row is deleted only
    for a customer its model recomputes: a merged-away or erased id is listed, and gets no new row), so it
    still holds as the last run tested it. A view (dim_customers, customer_360) recomputes what the one model
    it selects from does.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set placeholder = '__ckp_tests_since__' -%}
    {%- set customers_placeholder = '__ckp_recomputed_customers__' -%}
    {%- if where and customers_placeholder in where -%}
        {%- if not changed_since() -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set customers = recomputed_customers(relation) -%}
        {%- set referred = relationships_parent(relation) -%}
        {%- if referred is not none -%}
            {%- set customers = customers ~ ' union ' ~ recomputed_customers(referred) -%}
        {%- endif -%}
        {%- set where = where | replace(customers_placeholder, '(' ~ customers ~ ')') -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- endif -%}
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

{#- The customers a daily run recomputed in the model behind `relation` (a test's relation): the list it follows,
    for the changes it follows (meta `follows_customers` of affected_customers_config; a view's: that of the one
    model it selects from). The relations are taken from the graph: a test may only ref() the models it
    depends on. -#}
{% macro recomputed_customers(relation) -%}
    {%- set tested = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                     | selectattr('schema', 'equalto', relation.schema)
                     | selectattr('alias', 'equalto', relation.identifier) | list -%}
    {%- set follows = followed_customers(tested[0]) if tested else none -%}
    {%- if not follows -%}
        {{ exceptions.raise_compiler_error("__ckp_recomputed_customers__ in a test of " ~ relation
                                           ~ ", which does not follow the affected customers (affected_customers_config)") }}
    {%- endif -%}
    {%- set lists = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
                    | selectattr('name', 'equalto', follows['list']) | list -%}
    {%- set listed = api.Relation.create(database=lists[0].database, schema=lists[0].schema,
                                         identifier=lists[0].alias) -%}
    select affected.customer_id from {{ listed }} as affected {{ listed_for(follows['changes']) }}
{%- endmacro %}

{#- A model node's `follows_customers` meta (none: it does not follow the affected customers); a view without
    one: that of the one model it selects from (dim_customers: int_customers_described). -#}
{% macro followed_customers(node) -%}
    {%- set follows = node.config.meta.get('follows_customers') -%}
    {%- if not follows and node.config.materialized == 'view' -%}
        {%- set upstream = [] -%}
        {%- for uid in node.depends_on.nodes if uid.startswith('model.') -%}
            {%- do upstream.append(uid) -%}
        {%- endfor -%}
        {%- if upstream | length == 1 -%}
            {%- set follows = followed_customers(graph.nodes[upstream[0]]) -%}
        {%- endif -%}
    {%- endif -%}
    {{- return(follows or none) -}}
{%- endmacro %}

{#- The relation a relationships test (the test being run: `model`) refers to (its `to`), none for any other
    test. -#}
{% macro relationships_parent(relation) -%}
    {%- set metadata = model.get('test_metadata') or {} -%}
    {%- if metadata.get('name') != 'relationships' -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- for uid in model.depends_on.nodes -%}
        {%- set node = graph.nodes.get(uid) -%}
        {%- if node and node.resource_type == 'model'
               and not (node.schema == relation.schema and node.alias == relation.identifier) -%}
            {{- return(api.Relation.create(database=node.database, schema=node.schema, identifier=node.alias)) -}}
        {%- endif -%}
    {%- endfor -%}
    {{- return(none) -}}
{%- endmacro %}
