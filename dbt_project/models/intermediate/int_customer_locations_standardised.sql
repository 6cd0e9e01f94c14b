{{ affected_customers_config(indexes=[{'columns': ['customer_id'], 'unique': true}], changes=record_changes()) }}

-- The golden record's city and province under one name each. Sources spell the same place in Persian
-- and Latin script and in several transliterations (تهران / Tehran / Teheran, Mashhad / Mashad, شيراز
-- with an Arabic yeh); grouped as received, one city becomes several in every report. Names are
-- compared with util.normalize_name (letter variants, case, spacing) against the seeds
-- iran_city_names and iran_province_names. A recognised city also decides the province; anything not
-- in the seeds is kept as received (add the missing spellings to the seeds, not to this SQL).
-- Incremental: a daily run recomputes only the customers whose records changed (record_changes(),
-- macros/affected_customers.sql).

with

golden_records as (

    select * from {{ ref('int_customer_attributes_pivoted') }}
    {{ only_affected_customers(changes=record_changes()) }}

),

city_names as (

    select * from {{ ref('iran_city_names') }}

),

province_names as (

    select * from {{ ref('iran_province_names') }}

),

city_keys as (

    select distinct on (util.normalize_name(name_variant))
        util.normalize_name(name_variant) as city_key,
        city_name_fa,
        city_name_en,
        province_name_fa,
        province_name_en
    from city_names
    order by util.normalize_name(name_variant), city_name_en

),

province_keys as (

    select distinct on (util.normalize_name(name_variant))
        util.normalize_name(name_variant) as province_key,
        province_name_fa,
        province_name_en
    from province_names
    order by util.normalize_name(name_variant), province_name_en

),

final as (

    select
        golden_records.customer_id,
        coalesce(city_keys.city_name_fa, golden_records.city) as city,
        city_keys.city_name_en,
        coalesce(city_keys.province_name_fa, province_keys.province_name_fa, golden_records.province) as province,
        coalesce(city_keys.province_name_en, province_keys.province_name_en) as province_name_en,
        city_keys.city_key is not null as is_city_recognised
    from golden_records
    left join city_keys
        on util.normalize_name(golden_records.city) = city_keys.city_key
    left join province_keys
        on util.normalize_name(golden_records.province) = province_keys.province_key

)

select * from final
