-- Normalisation functions for dbt staging models (schema `util`).
--
-- SQL twins of crm_knowledge.normalize (Python): same rules, same answers. Staging cleans
-- identifiers inside the warehouse, ingestion and identity resolution clean them in Python, and a
-- customer must get the same email_norm / phone_e164 / national_id on both paths or identity
-- resolution splits them. tests/warehouse/test_sql_functions.py runs every function here against
-- its Python twin over a shared list of values; change both sides together.
--
-- PostgreSQL-specific (15+; written against 18): normalize(text, NFKC|NFD|NFC) needs a UTF8
-- database; regular expressions are PostgreSQL AREs (\uXXXX escapes, back-references); U&'...'
-- literals need standard_conforming_strings = on (the default). No extensions are used.
-- Idempotent: applied on every bootstrap (see warehouse/bootstrap.py).
--
-- Functions are IMMUTABLE (pure functions of their argument; safe in indexes and generated
-- columns) and PARALLEL SAFE. The simple ones are plain SQL so the planner can inline them.
--
-- ASCII text takes a short way: NFKC, the digit mapping and the invisible and Arabic-letter lists change no
-- ASCII character, and translate() over those lists and normalize() cost a few microseconds a call, most of
-- these functions' time on the mostly-ASCII phones, e-mails, ids and dates (millions of calls per run at a
-- million customers). `octet_length(s) = length(s)` (every character one byte: ASCII in a UTF8 database) is
-- the test. A function that reads its argument more than once is inlined only when the argument is cheap
-- (a column, a variable), so such functions are handed the raw value, never normalize(...) of it.

create schema if not exists util;

-- The Persian (U+06F0..U+06F9) and Arabic-Indic (U+0660..U+0669) digits, in that order: what the functions
-- below map onto '0123456789' twice (Python: PERSIAN_DIGITS + ARABIC_INDIC_DIGITS). A constant: the planner
-- folds it into the query.
create or replace function util.eastern_digits() returns text
language sql immutable parallel safe
as $$
    select U&'\06F0\06F1\06F2\06F3\06F4\06F5\06F6\06F7\06F8\06F9\0660\0661\0662\0663\0664\0665\0666\0667\0668\0669'
$$;

-- Persian (U+06F0..U+06F9) and Arabic-Indic (U+0660..U+0669) digits to ASCII; nothing else changes.
create or replace function util.ascii_digits(s text) returns text
language sql immutable parallel safe
as $$
    select case when octet_length(s) = length(s) then s
        else translate(s, util.eastern_digits(), '01234567890123456789') end
$$;

-- NFKC, then Persian and Arabic-Indic digits to ASCII (Python: to_ascii_digits(NFKC(s))): what the cleaning of
-- phones, e-mails, ids and dates starts with. ASCII text is returned as it is.
create or replace function util.nfkc_ascii_digits(s text) returns text
language sql immutable parallel safe
as $$
    select case when octet_length(s) = length(s) then s else translate(normalize(s, NFKC), util.eastern_digits(),
        '01234567890123456789') end
$$;

-- Canonical Persian text (Python: normalize_persian). NFKC, then one translate() that
--   * maps Arabic letter variants to Persian: ي ى -> ی, ك ڪ -> ک, ة ۀ ھ ە -> ه, أ إ ٱ -> ا, ؤ -> و (آ kept)
--   * maps digits to ASCII
--   * maps zero-width characters (ZWSP, ZWNJ, ZWJ, word joiner, BOM) to a space
--   * deletes (no counterpart in the target string) diacritics U+064B..U+065F, U+0670, tatweel
--     U+0640, bidi marks U+200E U+200F U+061C U+202A..U+202E U+2066..U+2069 and soft hyphen U+00AD;
-- then collapses whitespace and trims; '' -> null.
create or replace function util.normalize_persian(s text) returns text
language sql immutable parallel safe
as $$
    select nullif(btrim(regexp_replace(
        case when octet_length(s) = length(s) then s else translate(normalize(s, NFKC),
            -- from: 12 letters, 20 digits, 5 zero-width, then the characters to delete
            U&'\064A\0649\0643\06AA\0629\06C0\06BE\06D5\0623\0625\0671\0624'
            || util.eastern_digits()
            || U&'\200B\200C\200D\2060\FEFF'
            || U&'\064B\064C\064D\064E\064F\0650\0651\0652\0653\0654\0655\0656\0657\0658\0659\065A\065B\065C\065D\065E\065F\0670\0640'
            || U&'\200E\200F\061C\00AD\202A\202B\202C\202D\202E\2066\2067\2068\2069',
            -- to
            U&'\06CC\06CC\06A9\06A9\0647\0647\0647\0647\0627\0627\0627\0648'
            || '01234567890123456789'
            || '     ') end,
        '[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+', ' ', 'g'), ' '), '')
$$;

-- Matching form of a personal name (Python: normalize_name): normalize_persian, lower-case, Latin
-- accents removed (NFD, drop U+0300..U+036F, NFC - NFC re-composes آ), a few undecomposable Latin
-- letters folded, apostrophes dropped, other punctuation to a space, whitespace collapsed.
create or replace function util.normalize_name(s text) returns text
language sql immutable parallel safe
as $$
    select nullif(btrim(regexp_replace(
        regexp_replace(
            regexp_replace(
                -- ASCII: no accents to strip, no letters to fold
                case when octet_length(s) = length(s) then lower(util.normalize_persian(s))
                else replace(replace(replace(translate(
                    normalize(regexp_replace(normalize(lower(util.normalize_persian(s)), NFD),
                                             '[\u0300-\u036f]', '', 'g'), NFC),
                    U&'\00F8\0142\0111\0131', 'oldi'), U&'\00DF', 'ss'), U&'\00E6', 'ae'), U&'\0153', 'oe') end,
                '[\u0027\u0060\u00b4\u02bb\u02bc\u2018\u2019\u2032]', '', 'g'),
            '[\u0021-\u0026\u0028-\u002f\u003a-\u0040\u005b-\u005f\u007b-\u007e\u00a1-\u00bf\u00d7\u00f7'
            '\u060c\u060d\u061b\u061e\u061f\u066a-\u066d\u06d4\u2010-\u2027\u2030-\u205e]', ' ', 'g'),
        ' +', ' ', 'g'), ' '), '')
$$;

-- E-mail in matching form (Python: normalize_email): NFKC, ASCII digits, invisible characters
-- removed, trimmed, lower-case, leading 'mailto:' dropped; null unless it looks like
-- local@label.tld (one @, a dot in the domain, no empty labels, TLD >= 2 characters, no
-- whitespace or display-name/list delimiters).
create or replace function util.normalize_email(s text) returns text
language sql immutable parallel safe
as $$
    -- substring() of a pattern without capture groups is the whole match, or null: one pass, and the cleaned
    -- value is read once, so the function stays inlinable
    select substring(
        regexp_replace(lower(regexp_replace(
            case when octet_length(s) = length(s) then s else translate(util.nfkc_ascii_digits(s),
                U&'\200B\200C\200D\2060\FEFF\200E\200F\061C\00AD\202A\202B\202C\202D\202E\2066\2067\2068\2069', '') end,
            '^[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+|[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+$', '', 'g')), '^mailto:', '')
        from '^[^ \t\n\r\f\v\u0085\u1680\u2028\u2029@<>()\[\]\\,;:"]+'
             '@(?:[^ \t\n\r\f\v\u0085\u1680\u2028\u2029@<>()\[\]\\,;:".]+\.)+'
             '[^ \t\n\r\f\v\u0085\u1680\u2028\u2029@<>()\[\]\\,;:".]{2,}$')
$$;

-- What people type or paste between the digits of a phone number or an ID: whitespace, zero-width and bidi
-- marks, soft hyphen. The body of a regex character class, so each kind of number adds its own punctuation
-- (Python: normalize.persian.NUMBER_SEPARATOR_CHARS).
create or replace function util.number_separator_chars() returns text
language sql immutable parallel safe
as $$
    select ' \t\n\r\f\v\u0085\u1680\u2028\u2029\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff'
$$;

-- Phone number to E.164 with Iranian defaults (Python: normalize_phone(s, 'IR')).
--   +98 / 0098 / 98 (12 digits) / 0 prefixes are stripped to the 10-digit national number, which
--   must be a mobile (9xxxxxxxxx) or a landline (area code 1x..8x + 8 digits);
--   '+CC' / '00CC' with CC other than 98 is kept as '+<digits>' when 8..15 digits; else null.
create or replace function util.normalize_phone(s text) returns text
language plpgsql immutable parallel safe
as $$
declare
    t text;
    digits text;
    national text;
begin
    if s is null then
        return null;
    end if;
    t := regexp_replace(util.nfkc_ascii_digits(s),
        '[' || util.number_separator_chars() || '()./-]',
        '', 'g');
    if t !~ '^\+?[0-9]+$' then
        return null;
    end if;
    if left(t, 1) = '+' or left(t, 2) = '00' then
        digits := case when left(t, 1) = '+' then substr(t, 2) else substr(t, 3) end;
        if left(digits, 2) <> '98' then
            return case when digits ~ '^[1-9][0-9]{7,14}$' then '+' || digits end;
        end if;
        national := substr(digits, 3);
        if left(national, 1) = '0' then          -- '+98 (0)912 ...'
            national := substr(national, 2);
        end if;
    elsif length(t) = 12 and left(t, 2) = '98' then
        national := substr(t, 3);
    elsif left(t, 1) = '0' then
        national := substr(t, 2);
    else
        national := t;
    end if;
    return case when national ~ '^(9[0-9]{9}|[1-8][0-9]{9})$' then '+98' || national end;
end
$$;

-- Iranian national ID (Python: normalize_national_id): ASCII digits, whitespace/invisibles/dashes
-- and a spreadsheet '.0' suffix removed, 8-9 digits zero-padded to 10; returned only when the
-- check digit is right and it is not one digit repeated.
create or replace function util.normalize_national_id(s text) returns text
language plpgsql immutable parallel safe
as $$
declare
    t text;
    total int := 0;
    check_digit int;
begin
    if s is null then
        return null;
    end if;
    t := regexp_replace(util.nfkc_ascii_digits(s),
        '[' || util.number_separator_chars() || '-]',
        '', 'g');
    t := regexp_replace(t, '\.0+$', '');
    if t !~ '^[0-9]{8,10}$' then
        return null;
    end if;
    t := lpad(t, 10, '0');
    if t ~ '^(.)\1{9}$' then
        return null;
    end if;
    for i in 1..9 loop
        total := total + substr(t, i, 1)::int * (11 - i);
    end loop;
    total := total % 11;
    check_digit := substr(t, 10, 1)::int;
    if (total < 2 and check_digit = total) or (total >= 2 and check_digit = 11 - total) then
        return t;
    end if;
    return null;
end
$$;

-- Whether the value is a valid Iranian national ID; false (not null) for null, like the Python twin.
create or replace function util.national_id_is_valid(s text) returns boolean
language sql immutable parallel safe
as $$
    select util.normalize_national_id(s) is not null
$$;

-- ---------------------------------------------------------------------------------------------------
-- Typed values from text as received (Python: crm_knowledge.normalize.values). Raw keeps file values as
-- text; staging converts them with these, and a value that does not convert is NULL (a field issue,
-- never a lost record). Blank input is NULL too. Written so that nothing raises on any input: impossible
-- dates and out-of-range numbers are checked before they are built.
-- ---------------------------------------------------------------------------------------------------

-- Persian / Arabic-Indic digits to ASCII, whitespace trimmed at both ends (normalize.values._text).
create or replace function util.value_text(s text) returns text
language sql immutable parallel safe
as $$
    select nullif(regexp_replace(util.ascii_digits(s),
        '^[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+|[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+$', '', 'g'), '')
$$;

-- Gregorian date of a Jalali (Solar Hijri) date, NULL when it does not exist or is out of range
-- (normalize.dates.jalali_to_gregorian: the 33-year cycle, leap years y % 33 in 1 5 9 13 17 22 26 30).
create or replace function util.jalali_to_gregorian(jy int, jm int, jd int) returns date
language sql immutable parallel safe
as $$
    select case
        when jy between 1 and 9999 and jm between 1 and 12 and jd >= 1
            and jd <= case when jm <= 6 then 31 when jm <= 11 then 30
                           when (jy % 33) in (1, 5, 9, 13, 17, 22, 26, 30) then 30 else 29 end
            and 365 * (jy - 1) + ((jy - 1) / 33) * 8
                + (array[0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7,
                         8, 8, 8])[(jy - 1) % 33 + 1]
                + (array[0, 31, 62, 93, 124, 155, 186, 216, 246, 276, 306, 336])[jm] + jd - 1
                <= date '9999-12-31' - date '0622-03-21'
        then date '0622-03-21'
            + (365 * (jy - 1) + ((jy - 1) / 33) * 8
               + (array[0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7,
                        8, 8, 8])[(jy - 1) % 33 + 1]
               + (array[0, 31, 62, 93, 124, 155, 186, 216, 246, 276, 306, 336])[jm] + jd - 1)
    end
$$;

-- A Gregorian date, NULL when it does not exist (no error for 2023-02-30).
create or replace function util.gregorian_date(y int, m int, d int) returns date
language sql immutable parallel safe
as $$
    select case
        when y between 1 and 9999 and m between 1 and 12 and d >= 1
            and d <= extract(day from make_date(y, m, 1) + interval '1 month' - interval '1 day')
        then make_date(y, m, d)
    end
$$;

-- A date written in `calendar` ('gregorian' | 'jalali') and `fmt` (%Y 4 digits, %m and %d 1-2 digits, %%,
-- other characters literal), else ISO YYYY-MM-DD / YYYY/MM/DD; NULL when none gives a date that exists
-- (Python: normalize.values.parse_source_date). The text is NFKC-normalised, digits made ASCII, invisible
-- and zero-width characters removed and whitespace collapsed first, as normalize.dates.parse_date does.
create or replace function util.parse_date(s text, calendar text, fmt text) returns date
language plpgsql immutable parallel safe
as $$
declare
    v text;
    candidate text;
    pattern text;
    fields text;
    ch text;
    i int;
    parts text[];
    y int;
    m int;
    d int;
    result date;
begin
    if s is null or lower(btrim(calendar)) not in ('gregorian', 'jalali') then
        return null;
    end if;
    v := btrim(regexp_replace(
        case when octet_length(s) = length(s) then s else translate(util.nfkc_ascii_digits(s),
            U&'\200E\200F\061C\00AD\202A\202B\202C\202D\202E\2066\2067\2068\2069\200B\200C\200D\2060\FEFF', '') end,
        '[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+', ' ', 'g'), ' ');
    if v = '' then
        return null;
    end if;
    foreach candidate in array case when nullif(fmt, '') is null then array['%Y-%m-%d', '%Y/%m/%d']
                                    else array[fmt, '%Y-%m-%d', '%Y/%m/%d'] end loop
        -- the ISO forms (every call tries them) as the loop below spells them, without the loop: a third of
        -- the function's time
        if candidate = '%Y-%m-%d' then
            pattern := '([0-9]{4})\-([0-9]{1,2})\-([0-9]{1,2})';
            fields := 'Ymd';
            i := length(candidate) + 1;
        elsif candidate = '%Y/%m/%d' then
            pattern := '([0-9]{4})\/([0-9]{1,2})\/([0-9]{1,2})';
            fields := 'Ymd';
            i := length(candidate) + 1;
        else
            pattern := '';
            fields := '';
            i := 1;
        end if;
        while i <= length(candidate) loop
            ch := substr(candidate, i, 1);
            if ch = '%' then
                ch := substr(candidate, i + 1, 1);
                if ch = '%' then
                    pattern := pattern || '%';
                elsif ch in ('Y', 'm', 'd') and position(ch in fields) = 0 then
                    pattern := pattern || case ch when 'Y' then '([0-9]{4})' else '([0-9]{1,2})' end;
                    fields := fields || ch;
                else
                    pattern := null;  -- unsupported or repeated directive: the format is unusable
                    exit;
                end if;
                i := i + 2;
            else
                pattern := pattern || case when ch ~ '^[\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e ]$'
                                           then '\' || ch else ch end;
                i := i + 1;
            end if;
        end loop;
        continue when pattern is null or length(fields) <> 3;
        continue when v !~ ('^(?:' || pattern || ')$');
        -- The fields: when the format's literals hold no digit and separate every two fields, they are the
        -- digit runs of the matched text, in order (split without capture groups: regexp_match's capture
        -- dissection costs about ten times the match); else the groups of the match.
        if candidate !~ '%[Ymd]%[Ymd]' and regexp_replace(candidate, '%[Ymd]', '', 'g') !~ '[0-9]' then
            parts := array_remove(regexp_split_to_array(v, '[^0-9]+'), '');
        else
            parts := regexp_match(v, '^(?:' || pattern || ')$');
        end if;
        y := parts[position('Y' in fields)]::int;
        m := parts[position('m' in fields)]::int;
        d := parts[position('d' in fields)]::int;
        result := case when lower(btrim(calendar)) = 'jalali' then util.jalali_to_gregorian(y, m, d)
                       else util.gregorian_date(y, m, d) end;
        if result is not null then
            return result;
        end if;
    end loop;
    return null;
end
$$;

-- An ISO-8601 timestamp in UTC (YYYY-MM-DD[(T| )HH:MM[:SS[(.|,)ffffff]]][Z|+HH[:MM]|-HH[:MM]]); one without
-- an offset is UTC (Python: normalize.values.parse_timestamp).
create or replace function util.parse_timestamp(s text) returns timestamptz
language plpgsql immutable parallel safe
as $$
declare
    t text := util.value_text(s);
    rest text;
    zone text;
    digits text;
    zone_at int;
    off interval := interval '0';
    day date;
    result timestamptz;
begin
    -- One boolean match, then fixed positions: regexp_match with capture groups costs about a hundred
    -- times more per row (PostgreSQL's regex engine dissects every group), which at a million customers
    -- was minutes of the raw quality gate and of staging.
    if t is null or t !~ ('^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,6})?)?)?'
                          || '(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$') then
        return null;
    end if;
    day := util.gregorian_date(substr(t, 1, 4)::int, substr(t, 6, 2)::int, substr(t, 9, 2)::int);
    if day is null then
        return null;
    end if;
    -- after the date: '' or 'THH:MM[:SS[.ffffff]]', then perhaps the zone (the first Z, + or - from here on)
    rest := substr(t, 11);
    zone_at := strpos(translate(rest, 'Z+-', '###'), '#');
    if zone_at > 0 then
        zone := substr(rest, zone_at);
        rest := left(rest, zone_at - 1);
    end if;
    if rest <> '' and (substr(rest, 2, 2)::int > 23 or substr(rest, 5, 2)::int > 59
                       or coalesce(nullif(substr(rest, 8, 2), '')::int, 0) > 59) then
        return null;
    end if;
    if zone is not null and zone <> 'Z' then
        digits := replace(substr(zone, 2), ':', '');
        if substr(digits, 1, 2)::int > 23 or coalesce(nullif(substr(digits, 3), '')::int, 0) > 59 then
            return null;
        end if;
        off := make_interval(hours => substr(digits, 1, 2)::int, mins => coalesce(nullif(substr(digits, 3), '')::int, 0));
        if left(zone, 1) = '-' then
            off := -off;
        end if;
    end if;
    result := (day + make_interval(hours => coalesce(nullif(substr(rest, 2, 2), '')::int, 0),
                                   mins => coalesce(nullif(substr(rest, 5, 2), '')::int, 0),
                                   secs => coalesce(nullif(substr(rest, 8, 2), '')::int, 0)
                                           + rpad(substr(rest, 11), 6, '0')::int / 1e6)
               - off) at time zone 'UTC';
    if result < timestamptz '0001-01-01 00:00:00+00' or result >= timestamptz '10000-01-01 00:00:00+00' then
        return null;
    end if;
    return result;
end
$$;

-- A whole number: sign, digits (Persian too), thousands separators , and U+066C, an optional .0; NULL
-- outside the 4-byte integer range (Python: normalize.values.parse_integer).
create or replace function util.parse_integer(s text) returns int
language sql immutable parallel safe
as $$
    select case
        when t ~ '^[+-]?[0-9]+(\.0*)?$'
            and cast(split_part(t, '.', 1) as numeric) between -2147483648 and 2147483647
        then cast(cast(split_part(t, '.', 1) as numeric) as int)
    end
    from (select translate(util.value_text(s), U&',\066C', '') as t) as v
$$;

-- A decimal number: thousands separators , and U+066C, decimal point . or U+066B; NULL when not a number
-- or not below 10^12 - 0.005 in absolute value, so it fits numeric(14, 2) (normalize.values.parse_decimal).
create or replace function util.parse_decimal(s text) returns numeric
language sql immutable parallel safe
as $$
    select case
        when t ~ '^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$' and abs(cast(t as numeric)) < 999999999999.995
        then cast(t as numeric)
    end
    from (select translate(util.value_text(s), U&'\066B,\066C', '.') as t) as v
$$;

-- true / false from yes/no words: true t yes y 1 بله آری, false f no n 0 خیر نه (any case);
-- NULL otherwise (Python: normalize.values.parse_yes_no).
create or replace function util.parse_yes_no(s text) returns boolean
language sql immutable parallel safe
as $$
    select case
        when lower(util.value_text(s)) in ('true', 't', 'yes', 'y', '1', U&'\0628\0644\0647', U&'\0622\0631\06CC')
            then true
        when lower(util.value_text(s)) in ('false', 'f', 'no', 'n', '0', U&'\062E\06CC\0631', U&'\0646\0647')
            then false
    end
$$;
