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
-#}

{#- Lower bound of "recently loaded": the newest load time already in this model, minus the look-back. -#}
{% macro staging_watermark() -%}
    (
        select
            coalesce(max(staged.loaded_at), cast('-infinity' as timestamptz))
            - interval '{{ var("incremental_lookback_hours") }} hours'
        from {{ this }} as staged
    )
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
    `key_expressions`: the SQL expressions over raw columns that form the record key (as the model
    partitions by them).
-#}
{% macro loaded_versions_of_touched_keys(relation, key_expressions) -%}
    {%- set key = key_expressions | join(', ') -%}
    select * from {{ relation }}
    where
        {{ only_loaded_batches() }}
        {%- if is_incremental() %}
            and ({{ key }}) in (
                select {{ key }}
                from {{ relation }}
                where
                    _loaded_at > {{ staging_watermark() }}
                    or _batch_id in ({{ batches_to_restage() }})
            )
        {%- endif %}
{%- endmacro %}

{#-
    Post-hook of an incremental staging model: delete rows whose key no longer has any loaded raw version
    (its only versions were in a batch the gate held after they had been staged). Only keys of batches the
    gate ever held are examined, so the statement costs nothing on an ordinary day.
    `key_pairs`: list of [model column, raw expression] forming the key.
-#}
{% macro delete_keys_without_loaded_versions(relation, key_pairs) -%}
    {%- set model_key = key_pairs | map('first') | join(', ') -%}
    {%- set raw_key = key_pairs | map('last') | join(', ') -%}
    delete from {{ this }}
    where
        ({{ model_key }}) in (
            select {{ raw_key }}
            from {{ relation }}
            where _batch_id in (
                select gated.batch_id
                from {{ source('audit', 'dq_runs') }} as gated
                where gated.layer = 'raw' and gated.action in ('held', 'released') and gated.batch_id is not null
            )
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
