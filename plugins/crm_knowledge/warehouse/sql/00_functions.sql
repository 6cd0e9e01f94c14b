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

create schema if not exists util;

-- Persian (U+06F0..U+06F9) and Arabic-Indic (U+0660..U+0669) digits to ASCII; nothing else changes.
create or replace function util.ascii_digits(s text) returns text
language sql immutable parallel safe
as $$
    select translate(s,
        U&'\06F0\06F1\06F2\06F3\06F4\06F5\06F6\06F7\06F8\06F9\0660\0661\0662\0663\0664\0665\0666\0667\0668\0669',
        '01234567890123456789')
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
        translate(normalize(s, NFKC),
            -- from: 12 letters, 20 digits, 5 zero-width, then the characters to delete
            U&'\064A\0649\0643\06AA\0629\06C0\06BE\06D5\0623\0625\0671\0624'
            || U&'\06F0\06F1\06F2\06F3\06F4\06F5\06F6\06F7\06F8\06F9\0660\0661\0662\0663\0664\0665\0666\0667\0668\0669'
            || U&'\200B\200C\200D\2060\FEFF'
            || U&'\064B\064C\064D\064E\064F\0650\0651\0652\0653\0654\0655\0656\0657\0658\0659\065A\065B\065C\065D\065E\065F\0670\0640'
            || U&'\200E\200F\061C\00AD\202A\202B\202C\202D\202E\2066\2067\2068\2069',
            -- to
            U&'\06CC\06CC\06A9\06A9\0647\0647\0647\0647\0627\0627\0627\0648'
            || '01234567890123456789'
            || '     '),
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
                replace(replace(replace(translate(
                    normalize(regexp_replace(normalize(lower(util.normalize_persian(s)), NFD),
                                             '[\u0300-\u036f]', '', 'g'), NFC),
                    U&'\00F8\0142\0111\0131', 'oldi'), U&'\00DF', 'ss'), U&'\00E6', 'ae'), U&'\0153', 'oe'),
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
    select case when e ~ ('^[^ \t\n\r\f\v\u0085\u1680\u2028\u2029@<>()\[\]\\,;:"]+'
                          '@([^ \t\n\r\f\v\u0085\u1680\u2028\u2029@<>()\[\]\\,;:".]+\.)+'
                          '[^ \t\n\r\f\v\u0085\u1680\u2028\u2029@<>()\[\]\\,;:".]{2,}$')
                then e end
    from (
        select regexp_replace(t, '^mailto:', '') as e
        from (
            select lower(regexp_replace(
                translate(util.ascii_digits(normalize(s, NFKC)),
                          U&'\200B\200C\200D\2060\FEFF\200E\200F\061C\00AD\202A\202B\202C\202D\202E\2066\2067\2068\2069',
                          ''),
                '^[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+|[ \t\n\r\f\v\u0085\u1680\u2028\u2029]+$', '', 'g')) as t
        ) trimmed
    ) unprefixed
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
    t := regexp_replace(util.ascii_digits(normalize(s, NFKC)),
        '[ \t\n\r\f\v\u0085\u1680\u2028\u2029\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff()./-]',
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
    t := regexp_replace(util.ascii_digits(normalize(s, NFKC)),
        '[ \t\n\r\f\v\u0085\u1680\u2028\u2029\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff-]',
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
