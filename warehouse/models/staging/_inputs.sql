-- The validated input tables of the staging models, empty, for a source that has never been
-- validated yet: the merge then keeps going on the sources it has (issue #6: a source that is
-- down must not stop the merge). Columns and types are exactly what validation creates from
-- the connectors' raw tables; validation later appends to these tables by name.
create table if not exists staging.city_cases_cases (
    "case_id" VARCHAR,
    "category_type" VARCHAR,
    "category_code" VARCHAR,
    "category_name" VARCHAR,
    "description" VARCHAR,
    "address" VARCHAR,
    "street" VARCHAR,
    "community" VARCHAR,
    "reporter_type" VARCHAR,
    "reporter_name" VARCHAR,
    "reporter_phone" VARCHAR,
    "source_ticket_id" VARCHAR,
    "reported_at" VARCHAR,
    "registered_at" VARCHAR,
    "dispatched_at" VARCHAR,
    "disposed_at" VARCHAR,
    "verified_at" VARCHAR,
    "closed_at" VARCHAR,
    "deadline" VARCHAR,
    "status" VARCHAR,
    "status_name" VARCHAR,
    "updated_at" VARCHAR,
    "lon" DOUBLE,
    "lat" DOUBLE,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);
create table if not exists staging.grid_registry_grid_workers (
    "worker_id" VARCHAR,
    "name" VARCHAR,
    "phone" VARCHAR,
    "grid_code" VARCHAR,
    "role" VARCHAR,
    "updated_at" TIMESTAMP WITH TIME ZONE,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);
create table if not exists staging.grid_registry_grids (
    "grid_code" VARCHAR,
    "level" VARCHAR,
    "name" VARCHAR,
    "parent_code" VARCHAR,
    "updated_at" TIMESTAMP WITH TIME ZONE,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);
create table if not exists staging.grid_registry_households (
    "household_id" VARCHAR,
    "grid_code" VARCHAR,
    "address" VARCHAR,
    "compound" VARCHAR,
    "building" VARCHAR,
    "unit" VARCHAR,
    "room" VARCHAR,
    "updated_at" TIMESTAMP WITH TIME ZONE,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);
create table if not exists staging.grid_registry_residents (
    "resident_id" VARCHAR,
    "household_id" VARCHAR,
    "name" VARCHAR,
    "id_number" VARCHAR,
    "sex" VARCHAR,
    "birth_date" DATE,
    "phone" VARCHAR,
    "relation" VARCHAR,
    "residence_type" VARCHAR,
    "moved_in_on" DATE,
    "updated_at" TIMESTAMP WITH TIME ZONE,
    "is_deleted" BOOLEAN,
    "deleted_at" TIMESTAMP WITH TIME ZONE,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);
create table if not exists staging.grid_registry_special_groups (
    "resident_id" VARCHAR,
    "group_type" VARCHAR,
    "since" DATE,
    "note" VARCHAR,
    "updated_at" TIMESTAMP WITH TIME ZONE,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);
create table if not exists staging.health_codes_exports (
    "record_no" VARCHAR,
    "name" VARCHAR,
    "id_number" VARCHAR,
    "phone" VARCHAR,
    "code_color" VARCHAR,
    "color_since" VARCHAR,
    "vaccine_doses" VARCHAR,
    "last_test_at" VARCHAR,
    "last_test_result" VARCHAR,
    "community" VARCHAR,
    "export_date" VARCHAR,
    "file_name" VARCHAR,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);
create table if not exists staging.hotline_tickets (
    "ticket_id" VARCHAR,
    "caller_name" VARCHAR,
    "caller_phone" VARCHAR,
    "caller_id_number" VARCHAR,
    "address" VARCHAR,
    "street" VARCHAR,
    "department" VARCHAR,
    "category" VARCHAR,
    "urgency" VARCHAR,
    "content" VARCHAR,
    "received_at" VARCHAR,
    "dispatched_at" VARCHAR,
    "first_response_at" VARCHAR,
    "resolved_at" VARCHAR,
    "closed_at" VARCHAR,
    "rated_at" VARCHAR,
    "response_deadline" VARCHAR,
    "resolve_deadline" VARCHAR,
    "satisfaction" VARCHAR,
    "status" VARCHAR,
    "status_name" VARCHAR,
    "updated_at" VARCHAR,
    "_load_id" VARCHAR,
    "_extracted_at" TIMESTAMP WITH TIME ZONE,
    "_record_hash" VARCHAR,
    "_source_position" VARCHAR,
    "_validation_run_id" VARCHAR
);

-- A reconciliation's tombstones (issue #14) carry _is_tombstone; tables built before it lack it.
alter table staging.city_cases_cases add column if not exists _is_tombstone boolean;
alter table staging.grid_registry_grid_workers add column if not exists _is_tombstone boolean;
alter table staging.grid_registry_grids add column if not exists _is_tombstone boolean;
alter table staging.grid_registry_households add column if not exists _is_tombstone boolean;
alter table staging.grid_registry_residents add column if not exists _is_tombstone boolean;
alter table staging.grid_registry_special_groups add column if not exists _is_tombstone boolean;
alter table staging.health_codes_exports add column if not exists _is_tombstone boolean;
alter table staging.hotline_tickets add column if not exists _is_tombstone boolean;
