-- Raw layer: append-only landing tables, one per source kind. Rows are never updated; a newer
-- version of a record is a new row and staging picks the latest. Idempotent: safe on every deploy.
create schema if not exists raw;

-- File sources land as received: every business column is text, the value as the file holds it
-- (a CSV / XLSX cell, a JSON Lines value); staging converts with the util.* functions and records the values
-- that do not convert in audit.field_issues. Load metadata: _batch_id, _source_file, _loaded_at,
-- _row_number. The defaults of the metadata and constant columns let the loader COPY a file straight into its
-- raw table (ingest/files.py, the fast path): the load sets ckp.load_* for its transaction and restarts the
-- table's row sequence (raw.<table>__row_number, which also makes loads into one table take turns); a COPY
-- without the settings fails the not-null constraints instead of writing bad rows.
-- Every file table ends with the same load columns; the two kinds of customer file (forms, sibling units'
-- customer files) share the person columns too, in one order.
do $$
declare
    person_columns constant text := 'source_record_id text, first_name text, last_name text, full_name text, '
        'email text, phone text, national_id text, birth_date text, gender text, street text, city text, '
        'province text, postcode text, company text, business_type text, signup_date text';
    load_columns constant text := 'extras jsonb, _batch_id text not null, _source_file text not null, '
        '_loaded_at timestamptz not null, _row_number int not null, _record_hash text';
    t text;
begin
    execute format('create table if not exists raw.form_submissions (submission_id text, form_type text, '
        'submitted_at text, customer_ref text, order_ref text, product_interest text, message text, rating text, '
        'consent_marketing text, consent_profiling text, %s, %s)', person_columns, load_columns);
    execute format('create table if not exists raw.sibling_customers (unit text not null, %s, %s)',
        person_columns, load_columns);
    execute format('create table if not exists raw.contact_interactions (interaction_id text, channel text, '
        'occurred_at text, customer_name text, email text, phone text, customer_ref text, topic text, outcome text, '
        'notes text, agent_id text, %s)', load_columns);
    execute format('create table if not exists raw.order_exports (shop text not null, order_id text, '
        'customer_source_id text, order_date text, quantity text, amount text, items text, %s)', load_columns);
    -- Added later (any identifier, address details): existing warehouses get the columns here.
    -- `identifiers`: values of the identifier kinds declared in config/identity.yml that a source maps a column
    -- onto, as {"<kind>": "<value as received>"}.
    foreach t in array array['form_submissions', 'sibling_customers'] loop
        execute format('alter table raw.%I add column if not exists house_number text, '
            'add column if not exists address_line2 text, add column if not exists identifiers jsonb', t);
    end loop;
end
$$;

-- Warehouses created before raw held text hold converted values: their typed columns become text, in the form the
-- staging conversion reads back unchanged (ISO dates and UTC timestamps), and the content hash (no longer
-- computed for file rows) becomes optional. Columns already text are left alone, so this is a no-op after once.
do $$
declare
    c record;
begin
    for c in
        select table_name, column_name, data_type from information_schema.columns
        where table_schema = 'raw'
            and table_name in ('form_submissions', 'sibling_customers', 'contact_interactions', 'order_exports')
            and column_name not in ('extras', 'identifiers', '_batch_id', '_source_file', '_loaded_at', '_row_number')
            and data_type <> 'text'
    loop
        execute format('alter table raw.%I alter column %I type text using %s', c.table_name, c.column_name,
            case c.data_type
                when 'timestamp with time zone' then format(
                    'to_char(%I at time zone ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.US"Z"'')', c.column_name)
                when 'date' then format('to_char(%I, ''YYYY-MM-DD'')', c.column_name)
                else format('%I::text', c.column_name)
            end);
    end loop;
end
$$;
-- The content hash is no longer computed for file rows, and the metadata columns get the defaults of the
-- fast path (see above); the constant column of a kind (unit, shop) comes from the load's setting too. The row
-- number's sequence is named by oid (regclass) in the default: a name looked up per row (the `::text` form an
-- earlier session-temporary sequence needed) cost a fifth of a COPY. The sequence hands its numbers out from a
-- cache of 1,000 in the loading session (a number from the cache costs no buffer lock and no WAL; uncached,
-- nextval was about a fifth of a COPY's time); a load's restart empties its own session's cache, and the
-- restart's lock keeps other sessions off the sequence until the load commits, so the numbers of a load stay
-- 1, 2, 3, ... (the loader counts the rows read by one more nextval).
do $$
declare
    t text;
begin
    foreach t in array array['form_submissions', 'sibling_customers', 'contact_interactions', 'order_exports'] loop
        execute format('create sequence if not exists raw.%I', t || '__row_number');
        if (select cache_size from pg_sequences where schemaname = 'raw' and sequencename = t || '__row_number')
                <> 1000 then
            execute format('alter sequence raw.%I cache 1000', t || '__row_number');
        end if;
        execute format('alter table raw.%I alter column _record_hash drop not null, '
            || 'alter column _batch_id set default current_setting(''ckp.load_batch_id'', true), '
            || 'alter column _source_file set default current_setting(''ckp.load_source_file'', true), '
            || 'alter column _loaded_at set default now(), '
            || 'alter column _row_number set default nextval(%L::regclass)', t, 'raw.' || t || '__row_number');
    end loop;
end
$$;
alter table raw.sibling_customers alter column unit set default nullif(current_setting('ckp.load_unit', true), '');
alter table raw.order_exports alter column shop set default nullif(current_setting('ckp.load_shop', true), '');

create table if not exists raw.orders__customers (
    customer_id int, first_name text, last_name text, email text, phone text, national_id text,
    birth_date date, gender text, street text, city text, province text, postcode text, company text,
    business_type text, created_at timestamptz, updated_at timestamptz,
    _batch_id text not null, _source_file text not null, _loaded_at timestamptz not null,
    _row_number int not null, _record_hash text not null
);

create table if not exists raw.orders__products (
    product_id int, sku text, name text, category text, unit_price numeric(14, 2), updated_at timestamptz,
    _batch_id text not null, _source_file text not null, _loaded_at timestamptz not null,
    _row_number int not null, _record_hash text not null
);

create table if not exists raw.orders__orders (
    order_id int, customer_id int, ordered_at timestamptz, status text, channel text,
    total_amount numeric(14, 2), currency text, updated_at timestamptz,
    _batch_id text not null, _source_file text not null, _loaded_at timestamptz not null,
    _row_number int not null, _record_hash text not null
);

create table if not exists raw.orders__order_items (
    order_item_id int, order_id int, product_id int, quantity int, unit_price numeric(14, 2),
    line_amount numeric(14, 2), updated_at timestamptz,
    _batch_id text not null, _source_file text not null, _loaded_at timestamptz not null,
    _row_number int not null, _record_hash text not null
);

-- A version of an orders-database record that says the record was deleted at the source (its soft-delete
-- column was set, or key reconciliation found the key gone; ingest/orders_db.py). Staging drops keys
-- whose latest version is a deletion. Added by `alter` so warehouses created before it get it too.
alter table raw.orders__customers add column if not exists _deleted_at_source boolean not null default false;
alter table raw.orders__products add column if not exists _deleted_at_source boolean not null default false;
alter table raw.orders__orders add column if not exists _deleted_at_source boolean not null default false;
alter table raw.orders__order_items add column if not exists _deleted_at_source boolean not null default false;
create index if not exists orders__customers_deleted on raw.orders__customers (customer_id)
    where _deleted_at_source;
create index if not exists orders__products_deleted on raw.orders__products (product_id) where _deleted_at_source;
create index if not exists orders__orders_deleted on raw.orders__orders (order_id) where _deleted_at_source;
create index if not exists orders__order_items_deleted on raw.orders__order_items (order_item_id)
    where _deleted_at_source;

-- Rows that failed per-row parsing. Holds the row as received, so it may carry PII: lives in raw.
create table if not exists raw.load_rejects (
    batch_id text not null, source_name text not null, source_file text, row_number int,
    reason text not null, record jsonb, rejected_at timestamptz not null default now()
);

-- A database extract re-reads rows whose updated_at equals the watermark; this index lets the
-- loader drop versions it already holds (same key, same content hash) cheaply.
create index if not exists orders__customers_key on raw.orders__customers (customer_id, _record_hash);
create index if not exists orders__products_key on raw.orders__products (product_id, _record_hash);
create index if not exists orders__orders_key on raw.orders__orders (order_id, _record_hash);
create index if not exists orders__order_items_key on raw.orders__order_items (order_item_id, _record_hash);
create index if not exists load_rejects_batch on raw.load_rejects (batch_id);

-- Incremental staging (dbt_project/macros/incremental_staging.sql) finds the rows loaded since its last
-- run (_loaded_at) and the rows of batches the quality gate held or released (_batch_id). Without these, each
-- daily run would scan all of raw: at a million customers, ~25M rows. The file tables are append-only, so
-- their load time and batch id follow the physical order: BRIN indexes (a few pages, next to nothing to
-- maintain during a COPY) find a batch's rows. The file tables have no b-tree on their record key: it cost
-- about a third of a COPY's time, and staging no longer looks raw up by key (it compares a new version with
-- the staged row by load time; only the keys of a batch the gate holds now are recomputed from all of raw).
-- The orders database's tables keep theirs (their versions are ordered by updated_at, not by load).
-- Each file table: its BRIN indexes <table>_loaded_brin and <table>_batch_brin, and the b-trees of earlier
-- releases (<table>_loaded, <table>_batch, <table>_key) dropped.
do $$
declare
    file_table text;
begin
    foreach file_table in array array['form_submissions', 'contact_interactions', 'sibling_customers',
                                      'order_exports'] loop
        execute format('drop index if exists raw.%I', file_table || '_loaded');
        execute format('drop index if exists raw.%I', file_table || '_batch');
        execute format('create index if not exists %I on raw.%I using brin (_loaded_at)',
                       file_table || '_loaded_brin', file_table);
        execute format('create index if not exists %I on raw.%I using brin (_batch_id)',
                       file_table || '_batch_brin', file_table);
        execute format('drop index if exists raw.%I', file_table || '_key');
    end loop;
end
$$;
create index if not exists orders__customers_loaded on raw.orders__customers (_loaded_at);
create index if not exists orders__customers_batch on raw.orders__customers (_batch_id);
create index if not exists orders__products_loaded on raw.orders__products (_loaded_at);
create index if not exists orders__products_batch on raw.orders__products (_batch_id);
create index if not exists orders__orders_loaded on raw.orders__orders (_loaded_at);
create index if not exists orders__orders_batch on raw.orders__orders (_batch_id);
create index if not exists orders__order_items_loaded on raw.orders__order_items (_loaded_at);
create index if not exists orders__order_items_batch on raw.orders__order_items (_batch_id);
