"""One Expectation Suite per source table, as code: what the domain requires of each silo's rows.

Every expectation carries `meta={"severity": "critical" | "warning"}`: a critical row-level
failure holds the row back in quarantine, a critical table-level failure blocks the batch, a
warning is recorded and the row goes on. See README, 'Validation'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import great_expectations as gx
import great_expectations.expectations as gxe

from expectations.casts import ExpectColumnValuesToCastTo
from expectations.identity import (
    ExpectColumnValuesToBeValidMobileNumber,
    ExpectColumnValuesToBeValidResidentId,
)
from expectations.references import ExpectColumnValuesToExistInTable
from expectations.uniqueness import ExpectCompoundKeyToBeUnique

CRITICAL = {"severity": "critical"}
WARNING = {"severity": "warning"}

TICKET_STATES = ["received", "dispatched", "responded", "resolved", "closed", "rated"]
URGENCY = ["紧急", "加急", "一般"]
SATISFACTION = ["满意", "基本满意", "不满意"]
CASE_STATES = ["reported", "registered", "dispatched", "disposed", "verified", "closed"]
CASE_TYPES = ["部件", "事件"]
REPORTER_TYPES = ["网格员", "市民", "12345转办", "监督员"]
CODE_COLOURS = ["绿码", "黄码", "红码"]
TEST_RESULTS = ["阴性", "阳性"]
GRID_LEVELS = ["district", "street", "community", "area", "micro", "special"]
RELATIONS = ["户主", "配偶", "子女", "父母", "其他"]
GROUPS = ["独居老人", "残疾人", "困境儿童"]
ROLES = ["网格长", "网格员", "楼栋长"]
# Instants as the HTTP silos write them (ISO-8601 with offset) and as the health-code files do.
# No backslashes: GE pastes parameters into its unexpected-index query with repr(), doubling them.
ISO_INSTANT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?[+-][0-9]{2}:[0-9]{2}$"
LOCAL_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"


@dataclass
class Reference:
    """What suites check references and volume against, read from the warehouse before a run."""

    tables: set[str] = field(default_factory=set)  # raw tables present ("grid_registry_grids", ...)
    min_rows: int | None = None  # volume floor from earlier loads (None: not enough history)


def _exists(ref: Reference, column: str, table: str, ref_column: str, where: str | None = None,
            severity: dict = WARNING) -> list[gxe.Expectation]:
    """A reference check, or none while the referenced silo has not been synced yet."""
    if table not in ref.tables:
        return []
    return [ExpectColumnValuesToExistInTable(column=column, ref_table=f"raw.{table}", ref_column=ref_column,
                                             ref_where=where, meta=severity)]


def _not_null(column: str, severity: dict = CRITICAL) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToNotBeNull(column=column, meta=severity)


def _in_set(column: str, values: list[str], severity: dict = CRITICAL) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=values, meta=severity)


def _unique_per_load(column: str, with_columns: list[str]) -> gxe.Expectation:
    """One row per key within one load. Across loads a key may repeat: a re-sent or corrected file,
    a ticket updated twice between validations, or a value reverted are versions, and staging
    picks the latest; within one delivery a repeated key is a defect of the delivery."""
    return ExpectCompoundKeyToBeUnique(column=column, with_columns=[*with_columns, "_load_id"], meta=CRITICAL)


def _volume(ref: Reference) -> list[gxe.Expectation]:
    if ref.min_rows is None:
        return []
    return [gxe.ExpectTableRowCountToBeBetween(min_value=ref.min_rows, meta={
        **CRITICAL, "why": "a silo that suddenly sends far fewer rows than before"})]


def _in_order(later: str, earlier: str, severity: dict = CRITICAL) -> gxe.Expectation:
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later, column_B=earlier, or_equal=True, ignore_row_if="either_value_is_missing", meta=severity)


def _casts(column: str, type_name: str, severity: dict = CRITICAL) -> gxe.Expectation:
    """The value converts to the type staging casts it to: a pattern lets 2026-02-30 through."""
    return ExpectColumnValuesToCastTo(column=column, type_name=type_name, meta=severity)


def _columns(required: list[str]) -> gxe.Expectation:
    return gxe.ExpectTableColumnsToMatchSet(column_set=required, exact_match=False, meta=CRITICAL)


def hotline_tickets(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["ticket_id", "received_at", "updated_at", "status", "urgency", "street", "category"]),
        *_volume(ref),
        _not_null("ticket_id"), _not_null("received_at"), _not_null("updated_at"),
        _unique_per_load("ticket_id", ["updated_at"]),
        _in_set("status", TICKET_STATES), _in_set("urgency", URGENCY),
        _in_set("satisfaction", SATISFACTION, WARNING),
        gxe.ExpectColumnValuesToMatchRegex(column="received_at", regex=ISO_INSTANT, meta=CRITICAL),
        _casts("received_at", "timestamptz"), _casts("updated_at", "timestamptz"),
        _in_order("dispatched_at", "received_at"), _in_order("resolved_at", "received_at"),
        _in_order("closed_at", "resolved_at"),
        *_exists(ref, "street", "grid_registry_grids", "name", "level = 'street'"),
        ExpectColumnValuesToBeValidMobileNumber(column="caller_phone", allow_landline=True, meta=WARNING),
        ExpectColumnValuesToBeValidResidentId(column="caller_id_number", meta=WARNING),
    ]


def city_cases_cases(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["case_id", "category_type", "category_code", "reported_at", "updated_at", "status", "lon", "lat"]),
        *_volume(ref),
        _not_null("case_id"), _not_null("reported_at"), _not_null("updated_at"),
        _unique_per_load("case_id", ["updated_at"]),
        _in_set("category_type", CASE_TYPES), _in_set("status", CASE_STATES),
        _in_set("reporter_type", REPORTER_TYPES, WARNING),
        gxe.ExpectColumnValuesToMatchRegex(column="reported_at", regex=ISO_INSTANT, meta=CRITICAL),
        _casts("reported_at", "timestamptz"), _casts("updated_at", "timestamptz"),
        _in_order("closed_at", "reported_at"),
        # WGS-84 inside China's bounding box; outside it a case cannot be placed on the map.
        gxe.ExpectColumnValuesToBeBetween(column="lon", min_value=73.0, max_value=135.5, meta=WARNING),
        gxe.ExpectColumnValuesToBeBetween(column="lat", min_value=18.0, max_value=53.6, meta=WARNING),
        *_exists(ref, "street", "grid_registry_grids", "name", "level = 'street'"),
        ExpectColumnValuesToBeValidMobileNumber(column="reporter_phone", allow_landline=True, meta=WARNING),
    ]


def grid_registry_grids(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["grid_code", "level", "name", "parent_code", "updated_at"]), *_volume(ref),
        _not_null("grid_code"), _in_set("level", GRID_LEVELS),
        _unique_per_load("grid_code", ["updated_at"]),
        *_exists(ref, "parent_code", "grid_registry_grids", "grid_code"),
    ]


def grid_registry_households(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["household_id", "grid_code", "address", "updated_at"]), *_volume(ref),
        _not_null("household_id"),
        _unique_per_load("household_id", ["updated_at"]),
        *_exists(ref, "grid_code", "grid_registry_grids", "grid_code", "level = 'micro'"),
    ]


def grid_registry_residents(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["resident_id", "household_id", "name", "id_number", "sex", "updated_at", "is_deleted"]),
        *_volume(ref),
        _not_null("resident_id"), _not_null("updated_at"), _not_null("is_deleted"),
        _unique_per_load("resident_id", ["updated_at"]),
        _in_set("sex", ["男", "女"]), _in_set("relation", RELATIONS, WARNING),
        _in_set("residence_type", ["户籍", "流动"]),
        *_exists(ref, "household_id", "grid_registry_households", "household_id"),
        _not_null("name", WARNING),
        ExpectColumnValuesToBeValidResidentId(column="id_number", meta=WARNING),
        ExpectColumnValuesToBeValidMobileNumber(column="phone", allow_landline=True, meta=WARNING),
    ]


def grid_registry_special_groups(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["resident_id", "group_type", "since", "updated_at"]), *_volume(ref),
        _not_null("resident_id"), _in_set("group_type", GROUPS),
        _unique_per_load("resident_id", ["group_type", "updated_at"]),
    ]


def grid_registry_grid_workers(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["worker_id", "name", "grid_code", "role", "updated_at"]), *_volume(ref),
        _not_null("worker_id"), _in_set("role", ROLES),
        _unique_per_load("worker_id", ["updated_at"]),
        *_exists(ref, "grid_code", "grid_registry_grids", "grid_code"),
        ExpectColumnValuesToBeValidMobileNumber(column="phone", allow_landline=True, meta=WARNING),
    ]


def health_codes_exports(ref: Reference) -> list[gxe.Expectation]:
    return [
        _columns(["record_no", "name", "id_number", "code_color", "color_since", "export_date"]), *_volume(ref),
        _not_null("id_number"), _not_null("code_color"), _not_null("export_date"),
        _unique_per_load("export_date", ["record_no", "file_name"]),
        _in_set("code_color", CODE_COLOURS), _in_set("last_test_result", TEST_RESULTS, WARNING),
        gxe.ExpectColumnValuesToMatchRegex(column="color_since", regex=LOCAL_TIME, meta=CRITICAL),
        _casts("color_since", "timestamp"), _casts("record_no", "integer"),
        gxe.ExpectColumnValuesToMatchRegex(column="vaccine_doses", regex=r"^[0-9]$", meta=WARNING),
        *_exists(ref, "community", "grid_registry_grids", "name", "level = 'community'"),
        ExpectColumnValuesToBeValidResidentId(column="id_number", allow_masked=False, meta=WARNING),
        ExpectColumnValuesToBeValidMobileNumber(column="phone", allow_landline=True, meta=WARNING),
    ]


SUITES: dict[tuple[str, str], Callable[[Reference], list[gxe.Expectation]]] = {
    ("hotline", "tickets"): hotline_tickets,
    ("city_cases", "cases"): city_cases_cases,
    ("grid_registry", "grids"): grid_registry_grids,
    ("grid_registry", "households"): grid_registry_households,
    ("grid_registry", "residents"): grid_registry_residents,
    ("grid_registry", "special_groups"): grid_registry_special_groups,
    ("grid_registry", "grid_workers"): grid_registry_grid_workers,
    ("health_codes", "exports"): health_codes_exports,
}


def suite_for(source: str, entity: str, ref: Reference) -> gx.ExpectationSuite:
    """The suite of one source table, built against the current reference data.

    Built in one go, not by add_expectation: once a suite of that name is stored in the context,
    GE's add_expectation writes the stored suite again for every expectation it adds (18 store
    writes for the hotline's suite, 5.8 s of a 15-minute cycle's validate step at 30k residents,
    issue #19); the validation stores the suite once (engine._validation_definition).
    """
    return gx.ExpectationSuite(name=f"{source}.{entity}", expectations=SUITES[(source, entity)](ref))
