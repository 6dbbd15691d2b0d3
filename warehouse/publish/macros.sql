-- Macros the publish policy uses, created as temporary macros on the publishing connection.

-- An ID number as community staff may see it: first 6 and last 4 kept (the birth date hidden);
-- short or odd values fully starred.
create or replace temp macro onenet_mask_id(v) as
    case
        when v is null or trim(v) = '' then v
        when length(trim(v)) < 10 then repeat('*', length(trim(v)))
        else left(trim(v), 6) || repeat('*', length(trim(v)) - 10) || right(trim(v), 4)
    end;

-- HMAC-SHA256(secret, value) with the pads warehouse.pseudonym sets (RFC 2104).
create or replace temp macro onenet_pseudonym(v) as
    case when v is null then null else
        sha256(getvariable('onenet_hmac_opad') || unhex(sha256(getvariable('onenet_hmac_ipad') || encode(v))))
    end;

-- Free text for analysts: full-width and circled digits, full-width letters and dashes made plain and
-- zero-width characters removed first (so '１３８…', '①③⑧…' and '138\u200b1234…' are seen), then every
-- ID number (full, 15-digit or masked), mobile or landline number, any other run of 7+ digits (also in
-- Chinese numerals) and vehicle plate numbers replaced by [已隐去]. Dates and room numbers stay.
create or replace temp macro onenet_scrub(t) as
    regexp_replace(
        regexp_replace(
            translate(t, '０１２３４５６７８９ＸｘＡＢＣＤＥＦＧＨＪＫＬＭＮＰＱＲＳＴＵＶＷＹＺ＋－　＊⓪①②③④⑤⑥⑦⑧⑨–—／．',
                         '0123456789XxABCDEFGHJKLMNPQRSTUVWYZ+- *0123456789--/.'),
            '[\x{200B}-\x{200D}\x{2060}\x{FEFF}\x{00AD}]', '', 'g'),
        -- A digit may be written in Chinese (一三八…, 幺 and 两 as spoken), digits may be split by one
        -- space, dot, dash, slash, no-break space or middle dot each (zero-width characters are gone).
        '(\+?(00)?86[ ]?)?[1一幺][ .\-/\x{00A0}·•]?[3-9三四五六七八九]([ .\-/\x{00A0}·•]?[0-9〇零一二三四五六七八九幺两]){9}'
        || '|[0-9〇零一二三四五六七八九幺两]([ .\-/\x{00A0}·•]?[0-9〇零一二三四五六七八九幺两]){13,16}([ .\-/\x{00A0}·•]?[0-9Xx])?'
        || '|0[0-9]{2,3}[ .\-/\x{00A0}]?[0-9]{3,4}[ .\-/\x{00A0}]?[0-9]{4}'
        || '|[0-9]{6}[*]{4,}[0-9]{3}[0-9Xx]'
        || '|[0-9〇零一二三四五六七八九幺两]{7,}'
        || '|[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-Za-z][ ·•-]?([ ]?[A-Za-z0-9]){5,6}',
        '[已隐去]', 'g');

-- A 5-year age band ('80-84') on the day `as_of`, instead of a birth date.
create or replace temp macro onenet_age(birth, as_of) as
    date_diff('year', birth, as_of) - case when strftime(as_of, '%m%d') < strftime(birth, '%m%d') then 1 else 0 end;

create or replace temp macro onenet_age_band(birth, as_of) as
    cast(onenet_age(birth, as_of) // 5 * 5 as varchar) || '-' || cast(onenet_age(birth, as_of) // 5 * 5 + 4 as varchar);

-- Free text for community staff: phones stay (they call back), but an ID number written into the
-- text is masked like the ID column (first 6 + last 4), full-width digits included.
create or replace temp macro onenet_mask_ids_in_text(t) as
    regexp_replace(
        regexp_replace(
            translate(t, '０１２３４５６７８９Ｘｘ', '0123456789Xx'),
            '([1-9][0-9]{5})[ -]?((18|19|20)[0-9]{2}[ -]?[0-9]{2}[ -]?[0-9]{2})[ -]?([0-9]{3}[0-9Xx])',
            '\1********\4', 'g'),
        -- old 15-digit numbers: 6-digit division, YYMMDD, 3-digit sequence
        '(^|[^0-9])([1-9][0-9]{5})[0-9]{5}([0-9]{4})($|[^0-9])', '\1\2*****\3\4', 'g');

-- An address as community staff read it: the standardised form of an address key
-- ('花桥新村|7|2|501' -> '花桥新村7号楼2单元501'), the community's own prefix left out; null when the
-- address was not recognised.
create or replace temp macro onenet_address_std(k) as
    case when k is null or split_part(k, '|', 1) = '' then null else
        split_part(k, '|', 1)
        || case when split_part(k, '|', 2) <> '' then split_part(k, '|', 2) || '号楼' else '' end
        || case when split_part(k, '|', 3) <> '' then split_part(k, '|', 3) || '单元' else '' end
        || split_part(k, '|', 4)
    end;

-- The address as written, kept only where it says more or other than the standardised form (for
-- verification on a visit): null when, without everything up to the street and the community, full-width
-- digits and the usual spellings of 号楼 and 室, it reads the same.
create or replace temp macro onenet_address_as_written(raw, k) as
    case when onenet_address_std(k) is null then raw
         when regexp_replace(regexp_replace(regexp_replace(
                  translate(raw, '０１２３４５６７８９＃', '0123456789#'),
                  '^(.*街道)?([^区]{1,4}社区)?', ''),
                  '(栋|幢|#楼|#|号楼)', '号楼', 'g'),
                  '(室|号)$', '') = onenet_address_std(k) then null
         else raw
    end;

-- Two values compared character by character (for a data check a visit can settle): `a` with every
-- character it shares with `b` at the same place hidden as '*', so only the difference shows
-- ('13812345678' against '13812345687' -> '*********78'). Same-length values only.
create or replace temp macro onenet_show_diff(a, b) as
    array_to_string([case when substr(a, i, 1) = substr(b, i, 1) then '*' else substr(a, i, 1) end
                     for i in range(1, length(a) + 1)], '');

-- One of the two values a 数据待核 row compares, masked so that the difference stays visible: a
-- phone's or a same-length name's differing characters (onenet_show_diff), else the usual mask; a
-- birth date as its year; an ID first 6 + last 4.
create or replace temp macro onenet_show_compared(problem, v, other, phone_close, name_lengths_differ) as
    case
        when problem like '手机号%' then
            case when phone_close then onenet_show_diff(v, other)
                 else left(v, 3) || '****' || right(v, 4) end
        when problem like '姓名%' then
            case when not name_lengths_differ then onenet_show_diff(v, other)
                 else left(v, 1) || repeat('*', length(v) - 1) end
        when problem like '出生日期%' then left(v, length(v) - 4) || '年'
        else onenet_mask_id(v)
    end;

-- How many places two values differ at (a longer value's extra characters count).
create or replace temp macro onenet_diff_count(a, b) as
    len([i for i in range(1, greatest(length(a), length(b)) + 1) if substr(a, i, 1) <> substr(b, i, 1)]);
