-- community community.city_case: the community's city-management cases; no reporter contact.
-- grain: one row per case.
select
    community_code,
    community_name,
    case_id,
    reported_at,
    category_type,
    category_name,
    onenet_mask_ids_in_text(description) as description,
    address,
    onenet_address_std(address_key) as address_std,
    onenet_address_as_written(address, address_key) as address_as_written,
    reporter_type,
    source_ticket_id,
    status_name,
    deadline,
    closed_at
from core.city_case
where community_code is not null
