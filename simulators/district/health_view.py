"""The health-code platform's view: code colours, tests and doses, exported as one file a day."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from simulators.health_codes import drop, files

from .population import Grids, Households, Persons
from .rng import stream
from .surge import SurgeSpec
from .views import NA, NoiseLog, links, noisy_ids, noisy_names, noisy_phones, or_none, ts_array

DAY = 86_400_000_000
SOURCE = "health_codes.exports"
COLORS = np.array(["绿码", "黄码", "红码"])


def file_plan(day: int) -> dict:
    """How the platform hands over a day's export: format, encoding and which fault it carries."""
    plan: dict = {"fmt": "csv", "encoding": "gb18030", "serial": [], "broken_line": None}
    if day > 0 and day % 7 == 3:
        plan.update(fmt="xlsx", serial=["最近核酸采样时间"])
    elif day % 5 == 2:
        plan.update(serial=["最近核酸采样时间"], broken_line=2)
    elif day % 9 == 6:
        plan.update(encoding="utf-8-sig")
    elif day % 9 == 4:
        plan.update(encoding="gbk")
    return plan


def build(seed: int, root: Path, g: Grids, hh: Households, p: Persons, rates, start: date, day0_us: int,
          days: int, log: NoiseLog, progress=None, surge: SurgeSpec | None = None) -> pa.Table:
    """Write every day's export into the outbox; return truth links (source, record key, person).

    With `surge`, surge.code_flip_share of the green codes turn yellow (some red) on the peak's first
    day, within that day; they turn back by the usual rules (yellow after 7 days, red after 14).
    """
    rng = stream(seed, "health")
    r = rates.health_codes
    age0 = (np.datetime64(start.isoformat()) - p.birth).astype(int) / 365.25
    arrived = np.where(p.household >= 0, hh.arrived_day[np.maximum(p.household, 0)], 0)
    who = np.flatnonzero(p.is_resident & (age0 >= 3) & (rng.random(len(p)) < rates.health_coverage))
    n = len(who)
    # The platform holds one (noisy) identity per person, the same in every file.
    name, nk = noisy_names(rng, p.name[who], r)
    idn, ik = noisy_ids(rng, p.id18[who], r)
    phone, pk = noisy_phones(rng, p.contact_phone[who], p.old_phone[who], r)
    community = g.building_community[hh.building[p.household[who]]]
    start_day = np.maximum(arrived[who], 0)
    left = p.left_day[who]

    color = rng.choice(3, n, p=[0.9965, 0.003, 0.0005])
    since = day0_us - rng.integers(DAY, 200 * DAY, n)
    doses = rng.choice(5, n, p=[0.08, 0.04, 0.25, 0.60, 0.03]).astype(np.int32)
    tested = rng.random(n) < 0.5
    last_test = np.where(tested, day0_us - rng.integers(0, 7 * DAY, n), NA)
    result = or_none(tested, "阴性")

    truth: list[pa.Table] = []
    for day in range(days):
        t_day = day0_us + day * DAY
        changed = np.zeros(n, dtype=bool)
        if day > 0:
            u = rng.random((n, 4))
            age_d = (t_day - since) // DAY
            to_yellow = (color == 0) & (u[:, 0] < 0.0015)
            to_red = (color == 0) & (u[:, 0] >= 0.0015) & (u[:, 0] < 0.0017)
            back = ((color == 1) & (age_d >= 7) & (u[:, 1] < 0.3)) | ((color == 2) & (age_d >= 14) & (u[:, 1] < 0.2))
            test = u[:, 2] < 0.03
            positive = test & (u[:, 3] < 0.0005)
            when = t_day + rng.integers(DAY // 4, DAY * 3 // 4, n)
            last_test = np.where(test, when, last_test)
            result = np.where(test, np.where(positive, "阳性", "阴性"), result)
            if surge is not None and day == surge.peak_day:  # their own stream: the base draws stay put
                srng = stream(seed, "surge_health")
                hit = (color == 0) & (srng.random(n) < surge.code_flip_share)
                red = srng.random(n) < 0.15
                to_red, to_yellow = to_red | (hit & red), to_yellow | (hit & ~red)
            new_color = np.select([positive | to_red, to_yellow, back], [2, 1, 0], default=color)
            flip = new_color != color
            since = np.where(flip, when, since)
            color = new_color
            changed = flip | test | (start_day == day)
        present = (start_day <= day) & ((left < 0) | (left > day))
        rows = np.flatnonzero(present & (changed if day > 0 else True))
        rows = np.sort(np.concatenate([rows, rows[rng.random(len(rows)) < r.duplicate_row]]), kind="stable")
        k = len(rows)
        if k == 0:
            continue
        table = pa.table({
            "record_no": pa.array(np.arange(1, k + 1), pa.int64()), "name": pa.array(name[rows], pa.string()),
            "id_number": pa.array(idn[rows], pa.string()), "phone": pa.array(phone[rows], pa.string()),
            "code_color": COLORS[color[rows]], "color_since": ts_array(since[rows]),
            "vaccine_doses": pa.array(doses[rows], pa.int32()), "last_test_at": ts_array(last_test[rows]),
            "last_test_result": pa.array(result[rows], pa.string()), "community": community[rows],
        })
        the_date = start + timedelta(days=day)
        plan = file_plan(day)
        box = drop.outbox_dir(root, day)
        box.mkdir(parents=True, exist_ok=True)
        target = box / files.export_name(the_date, plan["fmt"])
        broken = plan["broken_line"] if plan["broken_line"] and k >= 3 else None
        files.write_export(target, table, fmt=plan["fmt"], excel_serial_columns=plan["serial"],
                           broken_line=broken, encoding=plan["encoding"])
        keys = np.char.add(f"{the_date:%Y%m%d}#", np.arange(1, k + 1).astype(str)).astype(object)
        truth.append(links(SOURCE, keys, p.person_id[who[rows]]))
        if day == 0:
            for fld, kinds in (("name", nk), ("id_number", ik), ("phone", pk)):
                log.add(SOURCE, keys, fld, kinds[rows])
        drop.plan_day(box, slow=[target.name] if day == 1 else [])
        if day == 4 and days > 5:  # the platform re-sends day 4's file on day 5 under a new name
            resend = drop.outbox_dir(root, 5)
            resend.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(target, resend / files.export_name(the_date, plan["fmt"], resend=True))
        if progress:
            progress(1)
    return pa.concat_tables(truth)


