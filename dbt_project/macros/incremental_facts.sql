{#-
    The config() every incremental fact shares: delete+insert on `unique_key` (the key the fact also hands to
    incremental_fact_filter) with a unique index on it, `more_indexes` of the fact's own, the indexes of the
    columns incremental_fact_filter compares (customer_id, staged_at, customer_resolved_at), and `post_hook`
    (e.g. delete_facts_deleted_at_source).
-#}
{% macro incremental_fact_config(unique_key, more_indexes=[], post_hook=[]) -%}
    {{ config(
        materialized='incremental',
        unique_key=unique_key,
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[{'columns': [unique_key], 'unique': true}] + more_indexes + [
            {'columns': ['customer_id']},
            {'columns': ['staged_at']},
            {'columns': ['customer_resolved_at']},
        ],
        post_hook=post_hook,
    ) }}
{%- endmacro %}

{#-
    The incremental filter of the marts facts (fct_orders, fct_order_items, fct_interactions,
    fct_form_submissions): which rows of the upstream model to re-write on an incremental run.

    * staged_at newer than any row already in the fact: a version of one of the row's inputs reached
      staging since the last run (a new or changed record, a late-arriving version, a released batch;
      staging stamps every row it re-writes);
    * customer_resolved_at newer than any row already in the fact: identity resolution (re-)attributed
      the record since the last run (store.write_result keeps resolved_at while the customer stays);
    * the row has no customer any more but the fact still holds one for it: the record left
      identity.record_clusters (it became unresolved), so no resolved_at can announce it.

    Rows that disappear upstream (a key whose only raw versions were held after being staged) are not
    deleted here (records deleted at the source are: delete_facts_deleted_at_source below); the weekly full
    refresh removes them (the warehouse DAG runs the marts with --full-refresh
    after the weekly full identity resolution: dags/ckp_common.MARTS_FULL_REFRESH).
    `unique_key`: the fact's key column (its incremental_fact_config's). Renders the whole `where` clause on an
    incremental run and nothing on a full build, so a fact ends its final CTE with
    `{{ incremental_fact_filter('<key>') }}`.
-#}
{% macro incremental_fact_filter(unique_key) -%}
    {%- if is_incremental() %}
        where
            staged_at > (
                select coalesce(max(existing.staged_at), cast('-infinity' as timestamptz))
                from {{ this }} as existing
            )
            or customer_resolved_at > (
                select coalesce(max(existing.customer_resolved_at), cast('-infinity' as timestamptz))
                from {{ this }} as existing
            )
            or (
                customer_id is null
                and {{ unique_key }} in (
                    select existing.{{ unique_key }}
                    from {{ this }} as existing
                    where existing.customer_id is not null
                )
            )
    {%- endif %}
{%- endmacro %}

{#-
    The load-tracking columns every incremental fact carries last, as its upstream model names them: when the
    row's newest input was loaded and staged, and when identity resolution attributed its customer. The last two
    (with customer_id) are what incremental_fact_filter reads.
-#}
{% macro incremental_fact_columns() -%}
    loaded_at,
    staged_at,
    customer_resolved_at
{%- endmacro %}

{#-
    Post-hook of the facts fed by the orders database: delete the rows of records deleted at the source
    (stg_orders__deletions). Staging and the intermediate models drop them at once, but an incremental fact
    re-writes only rows that still arrive, so without this a deleted order would count until the weekly full
    refresh. The model must declare `-- depends_on: ref('stg_orders__deletions')`.
    `column_entities`: list of [fact column, orders-db entity]; the column holds 'orders:' || the record key.
-#}
{% macro delete_facts_deleted_at_source(column_entities) -%}
    delete from {{ this }}
    where
        {%- for column, entity in column_entities %}
            {{ 'or ' if not loop.first }}{{ column }} in (
                select 'orders:' || deleted.record_key
                from {{ ref('stg_orders__deletions') }} as deleted
                where deleted.entity = '{{ entity }}'
            )
        {%- endfor %}
{%- endmacro %}

{#- The newest `column` value already held by this incremental model ('-infinity' when it holds none), read
    first and written as a literal (timestamp_read_first): the watermarks of the incremental intermediate
    models (int_orders_unioned, int_order_items_unioned, int_interactions_classified). -#}
{% macro newest_in_this(column) -%}
    {%- set bound -%}
        select coalesce(max(existing.{{ column }}), cast('-infinity' as timestamptz)) from {{ this }} as existing
    {%- endset -%}
    {{- timestamp_read_first(bound) -}}
{%- endmacro %}

{#-
    The rows of an incremental intermediate model whose customer may have changed since it last ran, for a
    model whose rows meet identity through a source record of `system` named by its column `record_column`
    (indexed): the record was (re-)attributed since the newest customer_resolved_at the model holds (a merge,
    a split, a record newly resolved), or it left identity while the row still names a customer (unresolved
    now; for the orders database also deleted at the source). `columns`: what to select of those rows
    (expressions over `existing`, the model's rows); `where`: a condition of the caller's own; `resolved_since`:
    the model's newest customer_resolved_at when the caller read it already (a model probing twice reads it once).

    Probes by the record column, no scan of the model. The weekly full refresh stays the backstop for what no
    probe sees, as for the facts (incremental_fact_filter): a record whose only batches were held after being
    staged. The model must declare `-- depends_on:` the staging models read here that it does not ref itself
    (stg_identity__unresolved; stg_orders__deletions for the orders database).
-#}
{% macro rows_reattributed(columns, system, record_column, where=none, resolved_since=none) -%}
    {%- set resolved_since = resolved_since or newest_in_this('customer_resolved_at') -%}
    select {{ columns }}
    from {{ this }} as existing
    where
        {% if where %}{{ where }} and {% endif %}existing.{{ record_column }} in (
            select reattributed.source_record_id
            from {{ ref('stg_identity__record_clusters') }} as reattributed
            where
                reattributed.source_system = '{{ system }}'
                and reattributed.resolved_at > {{ resolved_since }}
        )
    union
    select {{ columns }}
    from {{ this }} as existing
    where
        {% if where %}{{ where }} and {% endif %}existing.customer_id is not null
        and existing.{{ record_column }} in (
            select left_identity.source_record_id
            from {{ ref('stg_identity__unresolved') }} as left_identity
            where left_identity.source_system = '{{ system }}'
            {%- if system == 'orders' %}
            union all
            select deleted.record_key
            from {{ ref('stg_orders__deletions') }} as deleted
            where deleted.entity = 'customers'
            {%- endif %}
        )
{%- endmacro %}

{#- The config() of an incremental model with one row per source record (the identity input:
    int_customer_records_unioned, int_identity_candidates): delete+insert on the record key, unique-indexed,
    with staged_at indexed for the watermark (newest_in_this), `tags` and `post_hook` (delete_records_gone_hook). -#}
{% macro incremental_record_config(tags=[], post_hook=[]) -%}
    {{ config(
        materialized='incremental',
        unique_key=['source_system', 'source_record_id'],
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=[
            {'columns': ['source_system', 'source_record_id'], 'unique': true},
            {'columns': ['staged_at']},
        ],
        tags=tags,
        post_hook=post_hook,
    ) }}
{%- endmacro %}

{#- The post-hook (as template text: a hook renders when the model runs) that deletes the records of an
    incremental record model gone from its sources (delete_records_gone). `sources`: [model name, condition on
    `existing` (this model's rows) naming the records it gives, match of `existing` to its row `kept`, or none:
    the same record key (same_source_record)]. -#}
{% macro delete_records_gone_hook(sources) -%}
    {%- set listed = [] -%}
    {%- for source in sources -%}
        {%- set items = [] -%}
        {%- for item in source -%}
            {%- do items.append('none' if item is none else (item | tojson)) -%}
        {%- endfor -%}
        {%- do listed.append('[' ~ (items | join(', ')) ~ ']') -%}
    {%- endfor -%}
    {%- do return("{{ delete_records_gone([" ~ (listed | join(', ')) ~ "]) }}") -%}
{%- endmacro %}

{#- Delete the rows of this record model whose record is no longer in its source models: deleted at the
    source, or dropped by staging when its only raw batches were held after being staged (erasure deletes them
    itself). After the run's upsert the model holds every record of its sources, so it holds a record that is
    gone exactly when it holds more rows than they do together: the rows are counted first (index-only scans,
    about a second for 6M records), and the anti-joins run only when the counts differ (on an ordinary day they
    do not). -#}
{% macro delete_records_gone(sources) -%}
    {%- if is_incremental() -%}
        do $$
        begin
            if (select count(*) from {{ this }}) <> (
                {%- for name, _, _ in sources %}
                    (select count(*) from {{ ref(name) }}){{ ' +' if not loop.last }}
                {%- endfor %}
            ) then
            {%- for name, rows_of, key_match in sources %}
                delete from {{ this }} as existing
                where
                    {{ rows_of }}
                    and not exists (
                        select 1 from {{ ref(name) }} as kept
                        where {{ key_match or same_source_record('kept', 'existing') }}
                    );
            {%- endfor %}
            end if;
        end
        $$
    {%- endif -%}
{%- endmacro %}

{#- No rows, with the columns (name: type) of a CTE that only an incremental run fills (the changed keys of the
    incremental intermediate models): `{%- else %} {{ no_rows({'order_id': 'int'}) }}`. -#}
{% macro no_rows(columns) -%}
    select
    {%- for name, type in columns.items() %}
        cast(null as {{ type }}) as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
    where false
{%- endmacro %}
