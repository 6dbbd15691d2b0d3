-- community community.ticket: the community's hotline work orders (latest state); the caller's
-- name and full phone, since staff call back. grain: one row per ticket.
select
    community_code,
    community_name,
    ticket_id,
    received_at,
    received_on,
    category,
    urgency,
    onenet_mask_ids_in_text(content) as content,
    address,
    onenet_address_std(address_key) as address_std,
    onenet_address_as_written(address, address_key) as address_as_written,
    caller_name,
    caller_phone,
    department,
    status_name,
    first_response_at,
    resolved_at,
    closed_at,
    response_deadline,
    resolve_deadline
from core.ticket
where community_code is not null
