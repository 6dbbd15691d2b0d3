"""The district generator: determinism, valid truth IDs, noise as documented, namesakes, ground truth apart."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from stdnum.iso7064 import mod_11_2

from simulators.district import divisions, ids
from simulators.district.generate import GeneratorError, generate
from simulators.district.noise import NoiseRates
from simulators.grid_registry import database


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Path:
    """A town big enough for rates to be measured (20,000 residents, 8 days)."""
    root = tmp_path_factory.mktemp("town")
    generate(root, residents=20_000, seed=11, days=8)
    return root


def _truth(root: Path, source: str):
    """Source records joined to the true person they belong to."""
    links = pq.read_table(root / "truth" / "source_records.parquet").filter(pc.field("source") == source)
    persons = pq.read_table(root / "truth" / "persons.parquet")
    by_id = dict(zip(persons["person_id"].to_pylist(), persons.to_pylist(), strict=True))
    return {k: by_id[p] for k, p in zip(links["record_key"].to_pylist(), links["person_id"].to_pylist(), strict=True)}


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate(a, residents=600, seed=5, days=8)
    generate(b, residents=600, seed=5, days=8)
    generate(c, residents=600, seed=6, days=8)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert len(da) > 20 and any(k.endswith(".xlsx") for k in da) and any(k.endswith(".sqlite") for k in da)
    assert da == db
    assert da["hotline/tickets.parquet"] != dc["hotline/tickets.parquet"]


def test_regenerating_replaces_only_a_district(tmp_path):
    generate(tmp_path / "d", residents=300, seed=1, days=2)
    generate(tmp_path / "d", residents=300, seed=1, days=2)  # over an earlier district: fine
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(GeneratorError, match="not empty"):
        generate(tmp_path / "other", residents=300, seed=1, days=2)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_village_has_44_micro_grids(tmp_path):
    m = generate(tmp_path, residents=2000, seed=1, days=3)
    assert m["grid_sizes"]["micro"] == 44
    grids = database.read_table(database.sqlite_url(tmp_path), "grids")
    assert pc.sum(pc.equal(grids["level"], "micro")).as_py() == 44


def test_every_true_id_is_consistent(town):
    persons = pq.read_table(town / "truth" / "persons.parquet").to_pylist()
    codes = divisions.all_divisions()
    for p in persons:
        idn = p["id_number"]
        assert mod_11_2.is_valid(idn), idn  # independent MOD 11-2 implementation
        assert int(idn[:6]) in codes, idn
        assert idn[6:14] == p["birth_date"].strftime("%Y%m%d")
        assert (int(idn[16]) % 2 == 1) == (p["sex"] == "男")
    assert len({p["id_number"] for p in persons}) == len(persons)
    retired = [p for p in persons if p["id_number"].startswith("420123")]
    assert retired and all(p["birth_date"].year < 1985 for p in retired)


def test_noisy_ids_are_what_the_noise_log_says(town):
    noise = pq.read_table(town / "truth" / "noise.parquet").filter(pc.field("source") == "grid_registry.residents")
    kinds = {k: v for k, f, v in zip(noise["record_key"].to_pylist(), noise["field"].to_pylist(),
                                     noise["kind"].to_pylist(), strict=True) if f == "id_number"}
    truth = _truth(town, "grid_registry.residents")
    residents = database.read_table(database.sqlite_url(town), "residents").to_pylist()
    seen = Counter()
    for r in residents:
        kind, true_id, got = kinds.get(r["resident_id"], ""), truth[r["resident_id"]]["id_number"], r["id_number"]
        if kind == "":
            assert got == true_id
        if "typo" in kind:
            assert not mod_11_2.is_valid(got.upper()), (got, true_id)
        if kind == "legacy15":
            assert len(got) == 15 and ids.from_legacy15(got) == true_id
        if kind == "lower_x":
            assert got == true_id.replace("X", "x")
        if kind == "missing":
            assert got is None
        seen[kind] += 1
    assert seen["typo"] and seen["legacy15"] and seen["lower_x"] and seen["missing"]


def _close(observed: int, n: int, p: float) -> bool:
    """Within 4 binomial standard deviations (plus one record of slack)."""
    return abs(observed - n * p) <= 4 * (n * p * (1 - p)) ** 0.5 + 1


def test_observed_noise_rates_match_parameters(town):
    """Rates measured from the silo data against the truth, not from the generator's own log."""
    rates = NoiseRates()
    truth = _truth(town, "grid_registry.residents")
    rows = [r for r in database.read_table(database.sqlite_url(town), "residents").to_pylist()]
    n = len(rows)
    full = [r for r in rows if r["id_number"] and len(r["id_number"]) == 18 and r["id_number"].isascii()]

    def one_edit(a: str, b: str) -> bool:
        diff = [i for i in range(18) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]])

    typos = sum(one_edit(r["id_number"].upper(), truth[r["resident_id"]]["id_number"]) for r in full)
    assert _close(typos, len(full), rates.grid_registry.id_typo), (typos, len(full))
    missing = sum(r["id_number"] is None for r in rows)
    assert _close(missing, n, rates.grid_registry.id_missing), (missing, n)
    formatted = sum(1 for r in rows if r["phone"] and not r["phone"].isdigit())
    with_phone = sum(1 for r in rows if r["phone"])
    assert _close(formatted, with_phone, rates.grid_registry.phone_formatted * 0.95) or \
        _close(formatted, with_phone, rates.grid_registry.phone_formatted), (formatted, with_phone)

    tickets = pq.read_table(town / "hotline" / "tickets.parquet").to_pylist()
    given = [t["caller_id_number"] for t in tickets if t["caller_id_number"]]
    masked = sum("*" in g for g in given)
    assert _close(len(given), len(tickets), 1 - rates.hotline.id_missing), (len(given), len(tickets))
    assert _close(masked, len(given), rates.hotline_id_masked), (masked, len(given))


def test_namesakes_occur_at_realistic_rates(town):
    persons = pq.read_table(town / "truth" / "persons.parquet").filter(pc.field("is_resident"))
    counts = Counter(persons["name"].to_pylist())
    n = persons.num_rows
    shared = sum(c for c in counts.values() if c > 1) / n
    top_name, top = counts.most_common(1)[0]
    # In 20,000 Chinese people many share a name, yet no single name dominates.
    assert 0.3 < shared < 0.95, shared
    assert 0.001 < top / n < 0.02, (top_name, top)
    assert any("·" in name for name in counts)  # minority names with an interpunct


def test_ground_truth_stays_apart_from_the_silos(town):
    silo_files = [p for d in ("hotline", "city_cases", "grid_registry", "health_codes") for p in (town / d).rglob("*")]
    assert all("truth" not in str(p.relative_to(town)) for p in silo_files)
    for table in ("hotline/tickets.parquet", "city_cases/cases.parquet"):
        cols = pq.read_schema(town / table).names
        assert not {"person_id", "incident_id"} & set(cols)


def test_every_person_bearing_record_has_a_true_person(town):
    links = pq.read_table(town / "truth" / "source_records.parquet")
    tickets = pq.read_table(town / "hotline" / "tickets.parquet")
    residents = database.read_table(database.sqlite_url(town), "residents")
    keys = Counter(links["source"].to_pylist())
    assert keys["hotline.tickets"] == tickets.num_rows
    assert keys["grid_registry.residents"] >= residents.num_rows  # plus later arrivals
    assert keys["health_codes.exports"] > 0 and keys["grid_registry.grid_workers"] > 0


def test_transferred_cases_share_the_incident_of_their_ticket(town):
    inc = pq.read_table(town / "truth" / "incidents.parquet").to_pylist()
    incident = {(r["source"], r["record_key"]): r["incident_id"] for r in inc}
    cases = pq.read_table(town / "city_cases" / "cases.parquet").to_pylist()
    transferred = [c for c in cases if c["source_ticket_id"]]
    assert transferred
    for c in transferred:
        assert incident[("city_cases.cases", c["case_id"])] == incident[("hotline.tickets", c["source_ticket_id"])]
    # Some cases describe a hotline incident without the reference: same incident, no ticket number.
    unreferenced = [c for c in cases if not c["source_ticket_id"]
                    and any(k[0] == "hotline.tickets" and v == incident[("city_cases.cases", c["case_id"])]
                            for k, v in incident.items())]
    assert unreferenced
    repeated = Counter(v for (s, _), v in incident.items() if s == "hotline.tickets")
    assert max(repeated.values()) >= 2  # repeated tickets about one incident


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(GeneratorError, match="--residents"):
        generate(tmp_path, residents=5, seed=1)
    with pytest.raises(GeneratorError, match="--days"):
        generate(tmp_path, residents=500, seed=1, days=0)


def test_registry_changes_never_revive_someone_who_left(town):
    changes = pq.read_table(town / "grid_registry" / "changes" / "residents_changes.parquet").to_pylist()
    left_on: dict[str, int] = {}
    kinds = Counter()
    for c in sorted(changes, key=lambda c: (c["day"], c["updated_at"])):
        rid = c["resident_id"]
        assert rid not in left_on, f"{rid} changed on day {c['day']} after leaving on day {left_on[rid]}"
        if c["is_deleted"]:
            left_on[rid] = c["day"]
            kinds["leave"] += 1
        else:
            kinds["other"] += 1
    assert kinds["leave"] and kinds["other"]
    residents = {r["resident_id"]: r for r in database.read_table(database.sqlite_url(town), "residents").to_pylist()}
    moved = [c for c in changes if c["resident_id"] in residents and not c["is_deleted"]
             and c["household_id"] != residents[c["resident_id"]]["household_id"]]
    assert moved  # some residents move to another household
