{#-
    Incremental staging: the latest version of each record, maintained from the raw rows that arrived
    since the last run instead of from all of raw.

    Why it gives exactly the full build's result: a staging row is a function of ALL loaded raw versions
    of its key (row_number over the key). An incremental run finds the keys touched since the last run and
    recomputes each of them from all of its loaded raw versions, with the same window as the full build,
    then replaces them (delete+insert on the unique key). Keys not touched keep their row, which no new
    raw row could have changed. So:

    * a late-arriving version (loaded today, old updated_at) is ranked against every older version of its
      key, and wins or loses exactly as in a full build;
    * held / quarantined batches never appear: every version is still read through only_loaded_batches();
    * a batch released later (held -> loaded) and a batch held after its rows were staged (loaded -> held)
      are both found through the gate's record in audit.dq_runs (action held / released); their keys are
      recomputed on every run (there are few such batches). A key left with no loaded version at all is
      deleted by the post-hook delete_keys_without_loaded_versions.

    A key is "touched" when one of its raw rows was loaded after the watermark (the newest load time
    already staged minus var incremental_lookback_hours: a load whose transaction started before the last
    staging run but committed after it has an older _loaded_at, and is re-read as long as it committed
    within the look-back), or belongs to a batch the quality gate ever held or released.

    File sources (`as_received`: versions ordered by load alone) do not look raw up by key: their raw tables
    have no b-tree on the record key (it cost a third of a COPY). The new rows (loaded after the watermark,
    or of a batch the gate held or released) are deduplicated set-based, and the newest of each key replaces
    the staged row unless that row was loaded later: the staged row is the newest of the versions staged
    before, so the newer of the two is the newest of all. Only the keys of a batch the gate holds now (its
    rows may have been staged before it was held) are recomputed from all their loaded versions, which reads
    the whole raw table (new_versions_by_load_order); on an ordinary day there is none.

    The record key is stated once per model, at its top:

        {%- set record_key = [['shop', 'lower(btrim(shop))'], ['shop_order_id', 'btrim(order_id)']] -%}

    a list of [staging column, raw expression] pairs (the raw expression yields the staging column's value),
    and everything below takes it from there: config(unique_key=staging_unique_key(record_key),
    indexes=staging_indexes(record_key), post_hook=[staging_delete_hook(...)]) and the import CTEs
    (latest_loaded_versions: the touched keys' loaded versions and the dedup window over the key).
-#}

{#-
    The config() of an incremental staging model over source(`source_name`, `table_name`): its record key
    (stated once, at the model's top) gives the unique key, the indexes (with `more_indexes` of the model's
    own) and the post-hooks; `deleted_at_source`: the orders database's models, whose keys are deleted when
    their latest version marks a deletion at the source (delete_keys_deleted_at_source).
-#}
{% macro incremental_staging_config(source_name, table_name, record_key, more_indexes=[], deleted_at_source=false) -%}
    {%- set post_hook = [staging_delete_hook(source_name, table_name, record_key)] -%}
    {%- if deleted_at_source -%}
        {%- do post_hook.append("{{ delete_keys_deleted_at_source(source('" ~ source_name ~ "', '" ~ table_name
                                ~ "'), '" ~ record_key[0][0] ~ "', '" ~ record_key[0][1] ~ "') }}") -%}
    {%- endif -%}
    {{ config(
        materialized='incremental',
        unique_key=staging_unique_key(record_key),
        incremental_strategy='delete+insert',
        on_schema_change='sync_all_columns',
        indexes=staging_indexes(record_key, more_indexes),
        post_hook=post_hook,
    ) }}
{%- endmacro %}

{#- The `from` and `where` of a staging model's final CTE: the latest loaded version of each key
    (latest_loaded_versions); `deleted_at_source`: and not deleted at the source (the orders database). -#}
{% macro current_versions(deleted_at_source=false) -%}
    from latest_versions
    where
        version_number = 1
        {%- if deleted_at_source %}
        -- deleted at the source (soft-delete column or key reconciliation): no longer counts
        and _deleted_at_source is not true
        {%- endif %}
{%- endmacro %}

{#- The load and staging times every staging row carries: the incremental watermark (staging_watermark) and
    the incremental facts read them. -#}
{% macro staging_times() -%}
    _loaded_at as loaded_at,
        now() as staged_at
{%- endmacro %}

{#- The staging columns of a record key (the unique index, the post-hook's delete). -#}
{% macro staging_key_columns(record_key) -%}
    {%- do return(record_key | map('first') | list) -%}
{%- endmacro %}

{#- The unique_key of config(): one column by name (delete+insert's `in` form), several as a list. -#}
{% macro staging_unique_key(record_key) -%}
    {%- set columns = staging_key_columns(record_key) -%}
    {%- do return(columns[0] if columns | length == 1 else columns) -%}
{%- endmacro %}

{#- The raw expressions of a record key, comma-separated (the dedup window's partition). -#}
{% macro raw_key_expressions(record_key) -%}
    {{- record_key | map('last') | join(', ') -}}
{%- endmacro %}

{#- The indexes of an incremental staging table: its record key (unique), the load and staging times the
    watermark and the incremental facts read, and `more` of the model's own (e.g. a foreign key). -#}
{% macro staging_indexes(record_key, more=[]) -%}
    {%- do return(
        [{'columns': staging_key_columns(record_key), 'unique': true}]
        + more
        + [{'columns': ['loaded_at']}, {'columns': ['staged_at']}]
    ) -%}
{%- endmacro %}

{#-
    The import CTEs of an incremental staging model, `source` and `latest_versions`: the loaded raw versions
    of the touched keys (loaded_versions_of_touched_keys), numbered per record key newest first
    (`version_number` 1 is the version staging keeps). `version_order`: what makes a version newer before
    load order (e.g. ['updated_at desc nulls last'] for a source that stamps its changes); ties and sources
    without such a column fall back to the newest load (_loaded_at, then _row_number). A raw row without a
    key cannot be staged and is left out. `as_received`: a file source's raw table, whose values are text as
    received; each version then carries its batch's date convention (`_date_calendar`, `_date_format`, from
    audit.batch_conventions) for source_date().
-#}
{% macro latest_loaded_versions(relation, record_key, version_order=[], as_received=false) -%}
{%- set by_load_order = as_received and is_incremental() -%}
{%- if by_load_order and version_order -%}
    {{ exceptions.raise_compiler_error("latest_loaded_versions: a file source's versions are ordered by load only") }}
{%- endif -%}
source as (

    {%- if by_load_order %}
    {{ new_versions_by_load_order(relation, record_key) }}
    {%- else %}
    {{ loaded_versions_of_touched_keys(relation, record_key) }}
    {%- endif %}

),

{% if by_load_order -%}
ranked_versions as (
{%- else -%}
latest_versions as (
{%- endif %}

    select
        source.*,
        {%- if by_load_order %}
        {%- for expression in record_key | map('last') %}
        {{ expression }} as _staging_key_{{ loop.index }},
        {%- endfor %}
        {%- endif %}
        {%- if as_received %}
        coalesce(conventions.date_calendar, 'gregorian') as _date_calendar,
        conventions.date_format as _date_format,
        {%- endif %}
        row_number() over (
            partition by {{ raw_key_expressions(record_key) }}
            order by {{ (version_order + ['source._loaded_at desc', 'source._row_number desc']) | join(', ') }}
        ) as version_number
    from source
    {%- if as_received %}
    left join {{ source('audit', 'batch_conventions') }} as conventions
        on source._batch_id = conventions.batch_id
    {%- endif %}
    where
        {%- for expression in record_key | map('last') %}
        {% if not loop.first %}and {% endif %}({{ expression }}) is not null
        {%- endfor %}

)
{%- if by_load_order %},

latest_versions as (

    -- a new version replaces the staged row of its key unless the staged row was loaded later (a batch the
    -- gate released today was loaded before rows already staged); a key recomputed from all its versions
    -- (_recompute) is not compared
    select ranked_versions.*
    from ranked_versions
    where
        ranked_versions._recompute
        or not exists (
            select 1
            from {{ this }} as staged
            where
                {%- for column, expression in record_key %}
                {% if not loop.first %}and {% endif %}staged.{{ column }} = ranked_versions._staging_key_{{ loop.index }}
                {%- endfor %}
                and staged.loaded_at > ranked_versions._loaded_at
        )

)
{%- endif %}
{%- endmacro %}

{#- The post_hook of an incremental staging model over source(`source_name`, `table_name`): a hook is
    rendered when the model runs, so it is handed over as template text, the key written out as a literal. -#}
{% macro staging_delete_hook(source_name, table_name, record_key) -%}
    {%- do return("{{ delete_keys_without_loaded_versions(source('" ~ source_name ~ "', '" ~ table_name ~ "'), "
                  ~ record_key ~ ") }}") -%}
{%- endmacro %}

{#- Lower bound of "recently loaded": the newest load time already in this model, minus the look-back
    (a literal when the model runs: timestamp_read_first). -#}
{% macro staging_watermark() -%}
    {%- set bound -%}
        select
            coalesce(max(staged.loaded_at), cast('-infinity' as timestamptz))
            - interval '{{ var("incremental_lookback_hours") }} hours'
        from {{ this }} as staged
    {%- endset -%}
    {{- timestamp_read_first(bound) -}}
{%- endmacro %}

{#- The timestamptz a query `bound` returns (one row, one column; '-infinity' allowed), for a watermark.

    When a model runs, the bound is read first (run_query) and written into the query as a literal: as a
    subquery it is a value the planner does not know, so it guessed a third of raw recently loaded and read
    all of raw (the orders database's order lines: 23 s of a 1M daily run for 9,000 new rows); as a literal
    the planner sees how few rows are that new and reads them by index. Compiling, and a unit test (whose
    `this` is a fixture), keep the subquery. -#}
{% macro timestamp_read_first(bound) -%}
    {%- if execute and model.resource_type == 'model' -%}
        {%- set found = run_query("select case when w = '-infinity' then null else "
                                  ~ "cast(floor(extract(epoch from w) * 1000000) as bigint) end from (" ~ bound ~ ") as b(w)") -%}
        {%- set micros = found.columns[0].values()[0] -%}
        {%- if micros is none -%}
            cast('-infinity' as timestamptz)
        {%- else -%}
            (cast('epoch' as timestamptz) + {{ micros | int }} * interval '1 microsecond')
        {%- endif -%}
    {%- else -%}
        ({{ bound }})
    {%- endif -%}
{%- endmacro %}

{#- Whether a raw row's batch (`column`) is one whose visibility the quality gate changed (batches_to_restage).
    As staging_watermark, read first when a model runs and written as a literal list (`false` when there is
    none, as on an ordinary day): an `or` with a subquery keeps the planner from reading the recent rows by
    index. -#}
{% macro in_batches_to_restage(column='_batch_id') -%}
    {%- if execute and model.resource_type == 'model' -%}
        {%- set found = run_query(batches_to_restage()) -%}
        {%- set batch_ids = found.columns[0].values() | list -%}
        {%- if batch_ids -%}
            {{ column }} in (
                {%- for batch_id in batch_ids -%}
                    {{ dbt.string_literal(dbt.escape_single_quotes(batch_id)) }}{% if not loop.last %}, {% endif %}
                {%- endfor -%}
            )
        {%- else -%}
            false
        {%- endif -%}
    {%- else -%}
        {{ column }} in ({{ batches_to_restage() }})
    {%- endif -%}
{%- endmacro %}

{#- Batches whose visibility the quality gate changed (held, released): their rows are re-read every run. -#}
{% macro batches_to_restage() -%}
    select gated.batch_id
    from {{ source('audit', 'dq_runs') }} as gated
    where
        gated.layer = 'raw'
        and gated.action in ('held', 'released')
        and gated.batch_id is not null
{%- endmacro %}

{#-
    The `source` CTE body of an incremental staging model: the loaded raw rows of `relation`, and on an
    incremental run only those of keys touched since the last run (all loaded versions of those keys).
    `record_key`: the model's [staging column, raw expression] pairs.
-#}
{% macro loaded_versions_of_touched_keys(relation, record_key) -%}
    {%- set key = raw_key_expressions(record_key) -%}
    select * from {{ relation }}
    where
        {{ only_loaded_batches() }}
        {%- if is_incremental() %}
            and ({{ key }}) in (
                select {{ key }}
                from {{ relation }}
                where _loaded_at > {{ staging_watermark() }}
                union all
                select {{ key }}
                from {{ relation }}
                where {{ in_batches_to_restage() }}
            )
        {%- endif %}
{%- endmacro %}

{#- Batches the quality gate held that are not loaded now (held, retired): rows of theirs may have been
    staged before the gate held them. -#}
{% macro batches_held_by_the_gate() -%}
    select gated.batch_id
    from {{ source('audit', 'dq_runs') }} as gated
    where
        gated.layer = 'raw'
        and gated.action = 'held'
        and gated.batch_id is not null
        and gated.batch_id not in (
            select batch_id from {{ source('audit', 'load_batches') }}
            where status = 'loaded'
        )
{%- endmacro %}

{#-
    The `source` CTE body of an incremental staging model over a file source's raw table (versions ordered by
    load only), without looking raw up by record key (raw has no b-tree on it: it cost a third of a COPY):
    the loaded rows that arrived since the last run (_loaded_at after the watermark) or belong to a batch the
    gate held or released; latest_loaded_versions keeps the newest of each key and compares it with the
    staged row by load time. Only the keys of a batch the gate holds now (batches_held_by_the_gate: its rows
    may be staged) are recomputed from all their loaded versions (`_recompute`), which reads the whole raw
    table; on an ordinary day there is none and that branch is left out.
-#}
{% macro new_versions_by_load_order(relation, record_key) -%}
    {%- set key = raw_key_expressions(record_key) -%}
    {%- set recompute = false -%}
    {%- if execute -%}
        {%- set found = run_query("select exists (" ~ batches_held_by_the_gate() ~ ")") -%}
        {%- set recompute = found.columns[0].values()[0] -%}
    {%- endif %}
    select
        new_rows.*,
        false as _recompute
    from {{ relation }} as new_rows
    where
        {{ only_loaded_batches() }}
        and (
            _loaded_at > {{ staging_watermark() }}
            or {{ in_batches_to_restage() }}
        )
        {%- if recompute %}
        and ({{ key }}) not in ({{ keys_of_batches_held_by_the_gate(relation, record_key) }})

    union all

    select
        all_rows.*,
        true as _recompute
    from {{ relation }} as all_rows
    where
        {{ only_loaded_batches() }}
        and ({{ key }}) in ({{ keys_of_batches_held_by_the_gate(relation, record_key) }})
        {%- endif %}
{%- endmacro %}

{#- The record keys (raw expressions) of the rows of batches_held_by_the_gate(). -#}
{% macro keys_of_batches_held_by_the_gate(relation, record_key) -%}
    {%- set key = raw_key_expressions(record_key) -%}
    select {{ key }}
    from {{ relation }}
    where
        _batch_id in ({{ batches_held_by_the_gate() }})
        and ({{ key }}) is not null
{%- endmacro %}

{#-
    Post-hook of an incremental staging model: delete rows whose key no longer has any loaded raw version
    (its only versions were in a batch the gate held after they had been staged). Only keys of batches the
    gate ever held are examined, so the statement costs nothing on an ordinary day.
    `record_key`: the model's [staging column, raw expression] pairs.
-#}
{% macro delete_keys_without_loaded_versions(relation, record_key) -%}
    {%- set model_key = staging_key_columns(record_key) | join(', ') -%}
    {%- set raw_key = raw_key_expressions(record_key) -%}
    delete from {{ this }}
    where
        ({{ model_key }}) in (
            select {{ raw_key }}
            from {{ relation }}
            where _batch_id in ({{ batches_to_restage() }})
        )
        and ({{ model_key }}) not in (
            select {{ raw_key }}
            from {{ relation }}
            where
                {{ only_loaded_batches() }}
                and ({{ raw_key }}) is not null
        )
{%- endmacro %}

{#-
    The keys of an orders-database raw table whose latest loaded version marks a deletion at the source
    (`_deleted_at_source`: soft-delete column or key reconciliation, ingest/orders_db.py), with the deletion's
    updated_at (deleted_at) and load time (loaded_at). Only keys that have a deletion version are ranked (a
    partial index in raw finds them), so this costs nothing on an ordinary day. `raw_key`: the key column.
-#}
{% macro keys_deleted_at_source(relation, raw_key) -%}
    select
        versions.{{ raw_key }},
        versions.updated_at as deleted_at,
        versions._loaded_at as loaded_at
    from (
        select
            {{ raw_key }},
            updated_at,
            _loaded_at,
            _deleted_at_source,
            row_number() over (
                partition by {{ raw_key }}
                order by updated_at desc nulls last, _loaded_at desc, _row_number desc
            ) as version_number
        from {{ relation }}
        where
            {{ only_loaded_batches() }}
            and {{ raw_key }} in (
                select {{ raw_key }} from {{ relation }} where _deleted_at_source
            )
    ) as versions
    where versions.version_number = 1 and versions._deleted_at_source
{%- endmacro %}

{#-
    Post-hook of the orders-database staging models: delete rows whose key's latest loaded raw version marks
    a deletion at the source (keys_deleted_at_source). The model itself leaves such keys out, which removes
    them on a full build; on an incremental run delete+insert only replaces keys it outputs, so this removes
    the staged row. `model_key`: the model's key column; `raw_key`: the raw key column.
-#}
{% macro delete_keys_deleted_at_source(relation, model_key, raw_key) -%}
    delete from {{ this }}
    where {{ model_key }} in (
        select deleted.{{ raw_key }} from ({{ keys_deleted_at_source(relation, raw_key) }}) as deleted
    )
{%- endmacro %}
