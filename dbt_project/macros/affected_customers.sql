{#-
    The customer-level models that follow the affected customers (int_customers_affected) on a daily run.

    Such a model starts with `{{ affected_customers_config(indexes=[...]) }}` (incremental, append, the pre-hook
    `delete_affected_customers()` and the dependency on int_customers_affected); its import CTEs filter their
    input to the affected customers when `follows_affected_customers()`:

    * a daily run (var `dbt_tests_since` set: the warehouse clock when the run started,
      crm_knowledge.run_mode) on an existing table: the rows of the affected customers are deleted (retired
      and erased ids included: they get no new rows) and only those customers are recomputed;
    * the weekly full run (`--full-refresh`) or the first build: the table is rebuilt from scratch (a model
      views read from: every row deleted and every customer recomputed in place, see `read_through_views`);
    * an incremental build without the var (a hand-run `dbt build`): every row is deleted and every customer
      recomputed, so a run that does not know since when things changed is never partial.
-#}
{#- The config() of a model that follows a list of affected customers (`affected`: int_customers_affected, or
    the as-of / scored lists the as-of models follow), with its own `indexes` (none: no index) and `tags`: incremental
    with the append strategy, the pre-hook that deletes the listed customers' rows, and the depends_on line
    that makes the list (which the pre-hook and only_affected_customers read) built first.

    `changes`: the model follows only the customers listed for one of these reasons (a list's `changes`
    column; none: for any), e.g. record_changes(); its import CTEs pass the same to only_affected_customers.
    Both are kept in the model's meta (`follows_customers`): its tests can read only the customers a daily run
    recomputed (`__ckp_recomputed_customers__`, macros/tests_on_new_rows.sql).

    `read_through_views`: a view BI tools read (dim_customers, the relationship stages) selects from the model.
    `--full-refresh` would build a new table, swap it in and drop the old one with cascade, and the views with
    it, until dbt rebuilt them: BI queries in that gap fail. Such a model is never fully refreshed
    (full_refresh: false): the weekly run, which has no `dbt_tests_since`, deletes every row and recomputes
    every customer in the one transaction, so readers see the old rows until it commits; columns a new version
    adds are appended. -#}
{% macro affected_customers_config(indexes=none, affected='int_customers_affected', tags=none,
                                   read_through_views=false, changes=none) -%}
    {%- set changes_literal = 'none' if changes is none else (changes | tojson) -%}
    {%- set model_config = {
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'pre_hook': "{{ delete_affected_customers('" ~ affected ~ "', " ~ changes_literal ~ ") }}",
        'meta': {'follows_customers': {'list': affected, 'changes': changes}},
    } -%}
    {%- if read_through_views -%}
        {%- do model_config.update({'full_refresh': false, 'on_schema_change': 'append_new_columns'}) -%}
    {%- endif -%}
    {%- if indexes is not none -%}
        {%- do model_config.update({'indexes': indexes}) -%}
    {%- endif -%}
    {%- if tags is not none -%}
        {%- do model_config.update({'tags': tags}) -%}
    {%- endif -%}
    {{ config(**model_config) }}
-- depends_on: {{ ref(affected) }}
{%- endmacro %}

{#- When the run began (the warehouse clock, crm_knowledge.run_mode), '' on a weekly run or a hand-run build:
    the var `dbt_tests_since` when set (`--vars`, a unit test's override, even ''), else the environment
    variable CKP_DBT_TESTS_SINCE, which the DAGs' dbt tasks set: a var that changes from run to run makes dbt
    parse the whole project again in every task, an environment variable only the files that read it. -#}
{% macro changed_since() -%}
    {%- set value = var('dbt_tests_since', none) -%}
    {%- if value is none -%}
        {%- set value = env_var('CKP_DBT_TESTS_SINCE', '') -%}
    {%- endif -%}
    {{- return(value or '') -}}
{%- endmacro %}

{#- The var first: a dbt unit test has no relation to ask is_incremental() about (unit tests of these models
    set the var, and override is_incremental when they test the daily path). -#}
{% macro follows_affected_customers() -%}
    {{- return(changed_since() != '' and is_incremental()) -}}
{%- endmacro %}

{#- The run's start as a timestamptz literal; '-infinity' (everything changed) without the var. -#}
{% macro changed_since_timestamp() -%}
    cast('{{ (changed_since() or "-infinity") | replace("'", "''") }}' as timestamptz)
{%- endmacro %}

{#- `affected`: the list the model follows: int_customers_affected, or for the as-of models
    int_customers_affected_as_of (post_identity) / int_customers_affected_scored (post_scoring), which add the
    customers the as-of date moves across a boundary and those the day's scoring re-scored. -#}
{% macro delete_affected_customers(affected='int_customers_affected', changes=none) -%}
    {%- if is_incremental() -%}
        delete from {{ this }}
        {%- if follows_affected_customers() %}
            where customer_id in (
                select affected.customer_id from {{ ref(affected) }} as affected {{ listed_for(changes) }}
            )
        {%- endif %}
    {%- endif -%}
{%- endmacro %}

{#- The filter of an import CTE to the affected customers on a daily run (nothing otherwise). `keyword`: 'and'
    after a `where` of the CTE's own; `changes`: as the model's affected_customers_config. -#}
{% macro only_affected_customers(customer_id_column='customer_id', affected='int_customers_affected',
                                 keyword='where', changes=none) -%}
    {%- if follows_affected_customers() %}
        {{ keyword }} {{ customer_id_column }} in (
            select affected.customer_id from {{ ref(affected) }} as affected {{ listed_for(changes) }}
        )
    {%- endif %}
{%- endmacro %}

{#- The customers of a list (alias `affected`) listed for one of `changes` (nothing: every listed customer). -#}
{% macro listed_for(changes=none) -%}
    {%- if changes is not none -%}
        where string_to_array(affected.changes, ',') && array[
            {%- for change in changes %}'{{ change }}'{% if not loop.last %}, {% endif %}{% endfor -%}
        ]::text[]
    {%- endif -%}
{%- endmacro %}

{#- The reasons a list gives (its `changes`) when a customer's source records or their attribution changed: a
    record new, changed or re-attributed, or a merge (both ids). The models built from the records alone
    (survivorship, the golden record, the identity map) follow only these: a day's orders, interactions,
    deliveries and as-of moves leave them as they are. The day after a weekly run its deliveries list about
    a third of all customers (the 100k benchmark: 46k of 103k listed, 3k for their records). -#}
{% macro record_changes() -%}
    {{- return(['identity', 'merged_away', 'merged_into']) -}}
{%- endmacro %}

{#- The reasons int_customers_affected_as_of gives when a customer's order lines, or the as-of date's view of
    them, changed: their records or attribution (record_changes()), an order or order line, and the as-of
    moves (every customer, an event entering the known past, a revenue order moving between windows).
    int_customer_categories_ranked, built from the order lines alone, follows only these. -#}
{% macro category_changes() -%}
    {{- return(record_changes() + ['orders', 'everyone', 'as_of_events', 'as_of_windows']) -}}
{%- endmacro %}

{#- The reasons int_customers_affected_as_of gives when what a customer did, said or is known by changed, or the
    as-of date's view of it: every reason but a delivery and a campaign's open response window (deliveries,
    as_of_campaigns), which only the models that read the deliveries and campaign responses follow
    (customer_knowledge, int_customer_360_assembled). int_customer_activity_aggregated,
    int_customer_consents_pivoted, int_customers_described and customer_segments follow these: the day after a
    weekly run its deliveries list about two thirds of all customers (the 1M benchmark: 420k of 620k), whose
    activity, consents and description the deliveries do not change. -#}
{% macro activity_changes() -%}
    {{- return(category_changes() + ['interactions', 'forms', 'as_of_day']) -}}
{%- endmacro %}

{#- The reasons int_customers_affected_scored gives that customer_segments follows: activity_changes() (its
    consents and identity) and a changed score. -#}
{% macro segment_changes() -%}
    {{- return(activity_changes() + ['scores']) -}}
{%- endmacro %}

{#- The campaign customers whose stored values the as-of date moves (reason `as_of_campaigns`), from the import
    CTEs `campaign_assignments` and `orders` of the calling list (`orders` not materialized: each assignment
    probes its index on customer_id):
    * `first_visible_since` (a date expression; none: leave out): every customer, either arm, of a campaign
      delivered on or after it. A campaign is measured from the day after its delivery
      (fct_campaign_responses), so the first as-of date past it gives each of its customers a last campaign
      (int_customer_360_assembled); the holdout arm is sent nothing, so no delivery lists them;
    * `open_since`: the treated customers of a campaign delivered on or after it (its response window may still
      be open) who have ordered since the window opened: their campaign-response knowledge item says over how
      many days the response was observed, a count the as-of date moves (customer_knowledge).
    Nobody else in a campaign needs the as-of move: customer_360 computes the days observed at read time, and
    the order that makes a customer respond lists them itself (orders, as_of_events). An order of any status
    counts here: more customers listed, never fewer. -#}
{% macro campaign_customers_listed(open_since, first_visible_since=none) -%}
    select
        campaign_assignments.customer_id,
        'as_of_campaigns' as change
    from campaign_assignments
    where
        {% if first_visible_since is not none -%}
            campaign_assignments.campaign_date >= {{ first_visible_since }}
            or
        {% endif -%}
        (
            campaign_assignments.arm = 'treated'
            and campaign_assignments.campaign_date >= {{ open_since }}
            and exists (
                select 1
                from orders
                where
                    orders.customer_id = campaign_assignments.customer_id
                    and orders.ordered_at >= {{ start_of_day_after('campaign_assignments.campaign_date') }}
            )
        )
{%- endmacro %}

{#- One row per (customer id, reason) of a list built earlier (alias `affected`): a list built on another
    (int_customers_affected_as_of on int_customers_affected, int_customers_affected_scored on _as_of) keeps its
    reasons, so a model that follows only some of them recomputes only those customers. -#}
{% macro changes_listed(affected='affected') -%}
    select
        {{ affected }}.customer_id,
        listed.change
    from {{ affected }}
    cross join lateral unnest(string_to_array({{ affected }}.changes, ',')) as listed (change)
{%- endmacro %}

{#- The body of a list's `final` CTE (int_customers_affected, _as_of, _scored): one row per customer id the
    `changes` CTE (customer_id, change) names, with why it is listed (`changes`: its distinct reasons, sorted,
    comma-separated). -#}
{% macro customers_with_changes(changes='changes') -%}
    select
        customer_id,
        string_agg(distinct change, ',' order by change) as changes
    from {{ changes }}
    group by customer_id
{%- endmacro %}
