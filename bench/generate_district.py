"""Benchmark: generate a district-scale simulated district and print seconds per step and peak memory.

    .venv/bin/python bench/generate_district.py [--residents 1300000] [--out /tmp/onenet-bench]

Target (issue #2): 1.3M residents, all four silos, under 3 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from simulators.district.generate import Step, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--residents", type=int, default=1_300_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="keep the district here (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="onenet-bench-"))
    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    generate(out, residents=args.residents, seed=args.seed, days=args.days,
             step=Step(start=lambda name, total: marks.append((name, time.perf_counter()))))
    total = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ends = [t for _, t in marks[1:]] + [t0 + total]
    print(f"generate --residents {args.residents:,} --days {args.days}")
    for (name, start), end in zip(marks, ends, strict=True):
        print(f"  {name:<24} {end - start:8.1f} s")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    print(f"  {'total':<24} {total:8.1f} s   (target 180 s: {'met' if total <= 180 else 'MISSED'})")
    print(f"  peak memory {peak_mb:,.0f} MB; output {size:,.0f} MB in {out}")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
