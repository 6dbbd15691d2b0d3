-- Standardisation macros for IDs, phones and addresses: pure SQL, set-based, callable by hand.
-- Installed by warehouse.standardise.install(con); every name starts with std_ so they never
-- collide with other layers' functions. Names (pinyin, traditional -> simplified) are Python UDFs
-- in names.py, because SQL cannot do them.

-- Full-width ASCII (U+FF01..U+FF5E) and the ideographic space U+3000 to ASCII: the part of NFKC
-- that IDs, phones and addresses need (DuckDB has no NFKC; nfc_normalize leaves full-width alone).
-- translate() costs some microseconds a value, so only values holding a full-width character
-- pay for it (50 times faster on typical data). Pass a column: the argument is used three times.
create or replace macro std_ascii(s) as case
    when regexp_matches(s, '[\x{FF01}-\x{FF5E}\x{3000}]') then translate(
        s,
        '！＂＃＄％＆＇（）＊＋，－．／０１２３４５６７８９：；＜＝＞？＠ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ［＼］＾＿｀ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ｛｜｝～　',
        '!"#$%&''()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\]^_`abcdefghijklmnopqrstuvwxyz{|}~ ')
    else s
end;

-- Chinese or Arabic numerals up to 99 ('三' 3, '十二' 12, '二十三' 23, '０３' after std_ascii 3) and
-- digit-by-digit forms ('五零一' 501) as a plain decimal string without leading zeros; NULL if empty.
create or replace macro std_cn_number(s) as case
    when s is null or s = '' then null
    when regexp_full_match(s, '[0-9]+') then cast(try_cast(s as hugeint) as varchar)
    when contains(s, '十') then cast(
        coalesce(try_cast(translate(split_part(s, '十', 1), '零〇一二两三四五六七八九', '001223456789') as integer), 1) * 10
        + coalesce(try_cast(translate(split_part(s, '十', 2), '零〇一二两三四五六七八九', '001223456789') as integer), 0)
        as varchar)
    else cast(try_cast(translate(s, '零〇一二两三四五六七八九', '001223456789') as hugeint) as varchar)
end;


-- ---------------------------------------------------------------------------------------------
-- Resident ID numbers (GB 11643)
-- ---------------------------------------------------------------------------------------------

-- Format noise away: full-width to ASCII, no spaces or dashes, upper-case X; NULL if nothing left.
create or replace macro std_id_clean(raw) as
    nullif(upper(regexp_replace(std_ascii(raw), '[\s\x{00A0}-]+', '', 'g')), '');

-- The 17-digit body of an 18-digit number, or of a 15-digit one widened with '19' before its
-- 2-digit birth year (15-digit numbers were issued to people born in the 1900s only).
create or replace macro std_id_body17(c) as case
    when regexp_full_match(c, '[0-9]{17}[0-9X]') then substr(c, 1, 17)
    when regexp_full_match(c, '[0-9]{15}') then substr(c, 1, 6) || '19' || substr(c, 7, 9)
end;

-- ISO 7064 MOD 11-2 check character of a 17-digit body (weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2),
-- in integer arithmetic on the body as a number: three times faster than 17 substr() calls.
-- Pass a column, not an expression: a macro argument is substituted at each of its 17 uses.
create or replace macro std_id_check_char_of(n) as substr('10X98765432', 1 + cast((
      (n // 10000000000000000 % 10) * 7 + (n // 1000000000000000 % 10) * 9 + (n // 100000000000000 % 10) * 10
    + (n // 10000000000000 % 10) * 5 + (n // 1000000000000 % 10) * 8 + (n // 100000000000 % 10) * 4
    + (n // 10000000000 % 10) * 2 + (n // 1000000000 % 10) * 1 + (n // 100000000 % 10) * 6
    + (n // 10000000 % 10) * 3 + (n // 1000000 % 10) * 7 + (n // 100000 % 10) * 9
    + (n // 10000 % 10) * 10 + (n // 1000 % 10) * 5 + (n // 100 % 10) * 8
    + (n // 10 % 10) * 4 + (n // 1 % 10) * 2
    ) % 11 as integer), 1);

create or replace macro std_id_check_char(b) as std_id_check_char_of(try_cast(b as bigint));

-- A division code is known if it is in ref.division_codes (current and retired codes: a person
-- keeps the number for life); with the reference list not loaded, the 6-digit shape is enough.
create or replace macro std_id_division_known(code) as
    code in (select d.code from ref.division_codes as d)
    or (select count(*) = 0 from ref.division_codes);

-- Birth date in a 17-digit body, if it is a real calendar date in a plausible range.
create or replace macro std_id_birth_date(b) as case
    when try_strptime(substr(b, 7, 8), '%Y%m%d')::date between date '1900-01-01' and current_date
        then try_strptime(substr(b, 7, 8), '%Y%m%d')::date
end;

-- Kind of a cleaned ID `c`, given its 17-digit body `b` (std_id_body17), the body's check
-- character `ck` (std_id_check_char) and birth date `bd` (std_id_birth_date): 'valid',
-- 'legacy15' (15 digits, widened and valid), 'masked' (only the first 6 or 3 and the last 4
-- kept), 'invalid' (typo, impossible date, unknown division code, wrong shape), 'missing'.
-- The steps come in as arguments so that each is computed once, in its own column.
create or replace macro std_id_kind(c, b, ck, bd) as case
    when c is null then 'missing'
    when regexp_full_match(c, '[0-9]{6}[*]+[0-9]{3}[0-9X]|[0-9]{3}[*]+[0-9]{3}[0-9X]') then 'masked'
    when b is null then 'invalid'
    when length(c) = 18 and substr(c, 18, 1) <> ck then 'invalid'
    when bd is null then 'invalid'
    when not std_id_division_known(substr(c, 1, 6)) then 'invalid'
    when length(c) = 15 then 'legacy15'
    else 'valid'
end;

-- Everything about one ID, from its cleaned form, body, kind, check character and birth date:
--   std        the 18-character number (15-digit ones converted), NULL unless valid or legacy15
--   kind       see std_id_kind
--   valid      kind in ('valid', 'legacy15')
--   prefix6    first 6 characters, for valid, legacy15 and masked-with-6 numbers (NULL otherwise)
--   suffix4    last 4 characters (sequence + check character), for valid, legacy15 and masked ones,
--              so a masked number can be compared to a full one
--   birth_date, sex  from a valid number (17th digit odd = 男, even = 女)
create or replace macro std_id_parts(c, b, k, ck, bd) as struct_pack(
    std := case when k in ('valid', 'legacy15') then b || ck end,
    kind := k,
    valid := k in ('valid', 'legacy15'),
    prefix6 := case
        when k in ('valid', 'legacy15') then substr(c, 1, 6)
        when k = 'masked' and regexp_matches(c, '^[0-9]{6}') then substr(c, 1, 6)
    end,
    suffix4 := case
        when k in ('valid', 'legacy15') then substr(b, 15, 3) || ck
        when k = 'masked' then right(c, 4)
    end,
    birth_date := case when k in ('valid', 'legacy15') then bd end,
    sex := case
        when k in ('valid', 'legacy15') then
            case when (ascii(substr(b, 17, 1)) - 48) % 2 = 1 then '男' else '女' end
    end
);

-- One raw ID in one call. The nested selects bind each step's result to a column once: a macro
-- argument is substituted at every use, and passing the nested calls directly would repeat the
-- cleaning and the check sum hundreds of times in the plan.
create or replace macro std_id(raw) as (
    select std_id_parts(c, b, std_id_kind(c, b, ck, bd), ck, bd)
    from (
        select c, b, std_id_check_char(b) as ck, std_id_birth_date(b) as bd
        from (select c, std_id_body17(c) as b from (select std_id_clean(raw) as c))
    )
);


-- ---------------------------------------------------------------------------------------------
-- Phone numbers
-- ---------------------------------------------------------------------------------------------

-- Digits only, after full-width to ASCII.
create or replace macro std_phone_digits(raw) as regexp_replace(std_ascii(raw), '[^0-9]', '', 'g');

-- The national number from the raw text and its digits `d` (std_phone_digits(raw)): a country
-- code ('+86', '0086', or a bare '86' before 10+ more digits) stripped; an area code written
-- after +86 gets its trunk 0 back ('+86 27 8234 5678' -> 02782345678).
create or replace macro std_phone_national(raw, d) as case
    when not (regexp_matches(std_ascii(raw), '^\s*(\+\s*86|0086)') or (d like '86%' and length(d) >= 12))
        then d
    when regexp_replace(d, '^(0086|86)', '') like '1%' then regexp_replace(d, '^(0086|86)', '')
    else '0' || regexp_replace(d, '^(0086|86)', '')
end;

-- Kind of a national number: 'mobile' (1[3-9] + 9 digits), 'landline' (0 + 2-3 digit area code +
-- 7-8 digits, or a local 7-8 digit number), 'invalid', 'missing'.
create or replace macro std_phone_kind(n) as case
    when n is null or n = '' then 'missing'
    when regexp_full_match(n, '1[3-9][0-9]{9}') then 'mobile'
    when regexp_full_match(n, '0[1-9][0-9]{1,2}[0-9]{7,8}|[2-9][0-9]{6,7}') then 'landline'
    else 'invalid'
end;

-- The standard number of national number `n` of kind `k`: a mobile's 11 digits, a landline's
-- digits with the area code (a local number gets `area_code`, the district's own: 027 is Wuhan);
-- NULL for invalid and missing numbers.
create or replace macro std_phone_std(n, k, area_code := '027') as case k
    when 'mobile' then n
    when 'landline' then case when n like '0%' then n else area_code || n end
end;

-- {std, kind} of one raw phone in one call (the nested select binds each step once; see std_id).
create or replace macro std_phone(raw) as (
    select struct_pack(std := std_phone_std(n, k), kind := k)
    from (select n, std_phone_kind(n) as k
          from (select std_phone_national(raw, std_phone_digits(raw)) as n))
);


-- ---------------------------------------------------------------------------------------------
-- Addresses
-- ---------------------------------------------------------------------------------------------

-- Full-width to ASCII, no whitespace.
create or replace macro std_address_clean(raw) as
    nullif(regexp_replace(std_ascii(raw), '[\s\x{00A0}]+', '', 'g'), '');

-- The parts of a free-hand address, as strings ('' where absent), in three shapes tried in order:
--   1. [city市][district区][street街道|镇][community社区|村] compound building [unit单元] [room]
--      where building is 3号楼 / 3栋 / 3幢 / 3座 / 3#楼 / 3# / 3号 / 三号楼 and the tail may be 3-2-501;
--   2. the building tail alone (no compound);
--   3. prefixes and a compound with no building.
-- The optional prefix groups prefer to match but give way when the compound would be left empty,
-- start with a digit or be numerals only: '永安小区3号楼' has no district, '花桥新村3幢' no
-- community, '花桥新村十二栋' no compound '十' (RE2 keeps Perl's leftmost-first preferences).
-- Shape 1 always leaves a compound, so an empty compound from its regexp_extract means no match:
-- one regex run for most addresses. std_address_shape1 runs it; std_address_parts_of picks.
create or replace macro std_address_shape1(a) as regexp_extract(a,
    '^(?:([^市]{1,10}市))?(?:([^区县市]{1,10}[区县]))?(?:(.{1,12}?(?:街道|镇)))?(?:(.{1,12}?(?:社区|村)))?'
    || '([零〇一二两三四五六七八九十]*[^0-9零〇一二两三四五六七八九十].*?)'
    || '(?:([0-9]+)-([0-9]+)-([0-9]+)(?:室|号|房)?'
    || '|([0-9]+|[零〇一二两三四五六七八九十]+)(?:号楼|栋|幢|座|#楼|#|号)(?:([0-9]+|[零〇一二两三四五六七八九十]+)单元)?(?:([0-9]+)(?:室|号|房)?)?)$',
    ['city', 'district', 'street', 'community', 'compound', 'b1', 'u1', 'r1', 'b2', 'u2', 'r2']);

-- The parts of cleaned address `a`, given `p1` = std_address_shape1(a) (pass a column).
create or replace macro std_address_parts_of(a, p1) as case
    when p1.compound <> '' then p1
    when regexp_full_match(a,
        '(?:([0-9]+)-([0-9]+)-([0-9]+)(?:室|号|房)?'
        || '|([0-9]+|[零〇一二两三四五六七八九十]+)(?:号楼|栋|幢|座|#楼|#|号)(?:([0-9]+|[零〇一二两三四五六七八九十]+)单元)?(?:([0-9]+)(?:室|号|房)?)?)')
    then regexp_extract(a,
        '^()()()()()'
        || '(?:([0-9]+)-([0-9]+)-([0-9]+)(?:室|号|房)?'
        || '|([0-9]+|[零〇一二两三四五六七八九十]+)(?:号楼|栋|幢|座|#楼|#|号)(?:([0-9]+|[零〇一二两三四五六七八九十]+)单元)?(?:([0-9]+)(?:室|号|房)?)?)$',
        ['city', 'district', 'street', 'community', 'compound', 'b1', 'u1', 'r1', 'b2', 'u2', 'r2'])
    else regexp_extract(a,
        '^(?:([^市]{1,10}市))?(?:([^区县市]{1,10}[区县]))?(?:(.{1,12}?(?:街道|镇)))?(?:(.{1,12}?(?:社区|村)))?'
        || '(.+)()()()()()()$',
        ['city', 'district', 'street', 'community', 'compound', 'b1', 'u1', 'r1', 'b2', 'u2', 'r2'])
end;

-- The parts of a cleaned address in one call (the nested select binds shape 1 once; see std_id).
create or replace macro std_address_parts(a) as (
    select std_address_parts_of(a, p1) from (select std_address_shape1(a) as p1)
);

-- The key that says two addresses are one flat: compound|building|unit|room (NULL without a compound).
create or replace macro std_address_key(compound, building, unit, room) as
    case when compound is not null then
        compound || '|' || coalesce(building, '') || '|' || coalesce(unit, '') || '|' || coalesce(room, '')
    end;

-- {city, district, street, community, compound, building, unit, room, key} from the parts `p`
-- (std_address_parts; pass a column, the argument is used many times), numerals unified:
-- 三号楼 = 3号楼 = 3栋 = 3幢 = 3#楼 -> building '3'; 2单元 -> '2'; 501室 -> '501'.
create or replace macro std_address_of_parts(p) as struct_pack(
    city := nullif(p.city, ''),
    district := nullif(p.district, ''),
    street := nullif(p.street, ''),
    community := nullif(p.community, ''),
    compound := nullif(p.compound, ''),
    building := std_cn_number(coalesce(nullif(p.b1, ''), p.b2)),
    unit := std_cn_number(coalesce(nullif(p.u1, ''), p.u2)),
    room := std_cn_number(coalesce(nullif(p.r1, ''), p.r2)),
    key := std_address_key(nullif(p.compound, ''), std_cn_number(coalesce(nullif(p.b1, ''), p.b2)),
                           std_cn_number(coalesce(nullif(p.u1, ''), p.u2)),
                           std_cn_number(coalesce(nullif(p.r1, ''), p.r2)))
);

-- One raw address in one call (the nested selects bind each step once; see std_id).
create or replace macro std_address(raw) as (
    select std_address_of_parts(std_address_parts_of(a, std_address_shape1(a)))
    from (select std_address_clean(raw) as a)
);

-- One structured part ('9号楼', '三单元', '501室', '３') as its number; NULL if it holds none.
create or replace macro std_address_number(part) as
    std_cn_number(regexp_extract(std_ascii(part), '([0-9]+|[零〇一二两三四五六七八九十]+)', 1));
