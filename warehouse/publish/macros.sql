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

-- Free text for analysts: full-width digits and letters made plain first (so '１３８…' is seen), then
-- every ID number (full, 15-digit or masked), mobile or landline number, any other run of 7+ digits,
-- and vehicle plate numbers replaced by [已隐去].
create or replace temp macro onenet_scrub(t) as
    regexp_replace(
        translate(t, '０１２３４５６７８９ＸｘＡＢＣＤＥＦＧＨＪＫＬＭＮＰＱＲＳＴＵＶＷＹＺ＋－　＊',
                     '0123456789XxABCDEFGHJKLMNPQRSTUVWYZ+- *'),
        '(\+?86[ -]?)?1[3-9][0-9]([ -]?[0-9]){8}'
        || '|0[0-9]{2,3}[ -]?[0-9]{7,8}'
        || '|[0-9]{6}([ -]?[0-9]){8,11}[0-9Xx]?'
        || '|[0-9]{6}[*]{4,}[0-9]{3}[0-9Xx]'
        || '|[0-9]{7,}'
        || '|[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领][A-Z][ ·•-]?[A-Z0-9]{5,6}',
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
