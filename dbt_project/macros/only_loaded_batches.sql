{#-
    Raw rows reach staging only when their load batch is `loaded` in the ledger: a batch held by a
    critical data-quality failure stays in raw (for the auditor and for the re-check after a fix) but
    is invisible downstream until the gate releases it.
-#}
{% macro only_loaded_batches() -%}
    _batch_id in (
        select batch_id from {{ source('audit', 'load_batches') }}
        where status = 'loaded'
    )
{%- endmacro %}
