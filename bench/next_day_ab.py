"""The real next day's publish of this code against an earlier one, in alternating fresh runs (issue #13).

    ONENET_DUCKDB_MEMORY_LIMIT=6GB .venv/bin/python -m bench.next_day_ab --baseline-src /tmp/base \
        --district /tmp/district13 --work /tmp/rs13/work \
        --serving-url postgresql://postgres@127.0.0.1:5432/onenet_serving_s13 [--pairs 3] [--out ab.json]

Each run is one `bench.read_side --parts merge --alone --pairs 1` in its code's folder (this
repository, or --baseline-src: a `git archive` of the code before): the saved day-28 state of WORK
restored, day 29 merged, then published, in a fresh process. The two codes alternate by
bench/compare.py's rotation (new old, old new, new old, ...), so neither always runs first on a
machine whose load drifts. WORK must be prepared by bench/read_side.py (its day-28 state is then
published by whichever code prepared it: the other code's first diff starts from that).

Prints, for the publish's wall and CPU seconds and its share of the merge, each side's median and
range, the ratio of medians (new / old) and the per-pair range; writes every run's figures to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench import compare

REPO = Path(__file__).resolve().parent.parent
NEXT_DAY = "publish next day (A runs)"
FIGURES = {"total": "publish, wall s", "total_cpu": "publish, CPU s", "merge_own": "merge own, wall s",
           "publish_share": "publish / merge, wall", "publish_share_cpu": "publish / merge, CPU"}


def run(src: Path, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """One next day of the code in `src`: read_side's figures for it."""
    subprocess.run([sys.executable, "-m", "bench.read_side", "--district", str(args.district), "--work",
                    str(args.work), "--out", str(out), "--parts", "merge", "--alone", "--pairs", "1",
                    "--serving-url", args.serving_url], cwd=src, check=True)
    summary = json.loads(out.read_text(encoding="utf-8"))["summary"][NEXT_DAY]
    return {key: float(summary[key]["median"]) for key in FIGURES}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--baseline-src", type=Path, required=True, help="a checkout of the code before")
    ap.add_argument("--district", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="prepared by bench/read_side.py")
    ap.add_argument("--serving-url", required=True)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("next_day_ab.json"))
    args = ap.parse_args()
    sides = {"new": REPO, "old": args.baseline_src.resolve()}
    names = list(sides)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for pair, ordering in enumerate(compare.order(len(names), args.pairs), start=1):
        for index in ordering:
            name = names[index]
            figures = run(sides[name], args, args.work.parent / f"next-day-{pair}-{name}.json")
            runs[name].append(figures)
            print(f"pair {pair} {name}: " + ", ".join(f"{FIGURES[k]} {v:g}" for k, v in figures.items()), flush=True)
            args.out.write_text(json.dumps(runs, indent=1), encoding="utf-8")
    for key, label in FIGURES.items():
        s = compare.summarize([r[key] for r in runs["new"]], [r[key] for r in runs["old"]])
        print(f"{label}: new median {s['median_a']:g} ({min(r[key] for r in runs['new']):g}-"
              f"{max(r[key] for r in runs['new']):g}), old {s['median_b']:g} ({min(r[key] for r in runs['old']):g}-"
              f"{max(r[key] for r in runs['old']):g}); new/old {s['ratio_of_medians']:.3f} "
              f"(pairs {s['pair_ratio_min']:.3f}-{s['pair_ratio_max']:.3f})")


if __name__ == "__main__":
    main()
