"""GE's private names we rely on are all listed (expectations/ge_private.py) and all present in the installed GE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from expectations import ge_private

REPO = Path(__file__).resolve().parents[2]
OURS = [*REPO.glob("expectations/*.py"), *REPO.glob("onenet/*.py"), *REPO.glob("warehouse/**/*.py")]


def test_every_listed_private_name_exists_in_the_installed_ge():
    assert len(ge_private.check()) == len(ge_private.PRIVATE_NAMES)


def test_a_missing_name_is_named_with_where_we_use_it(monkeypatch):
    gone = ge_private.PrivateName("great_expectations.execution_engine", "SqlAlchemyExecutionEngine._gone",
                                  "expectations/engine.py", "test", "none")
    monkeypatch.setattr(ge_private, "PRIVATE_NAMES", (*ge_private.PRIVATE_NAMES, gone))
    with pytest.raises(ge_private.PrivateNameMissing, match=r"SqlAlchemyExecutionEngine\._gone \(used in expectations/engine"):
        ge_private.check()


def test_our_code_uses_no_private_ge_name_that_is_not_listed():
    """Private GE names reached from our code: `from great_expectations... import _x`, `<ge module>._x`
    and GE class attributes we set or override (`_EXTRA_...`, `_prescriptive_...`, `_add_mostly_...`)."""
    listed = {n.attribute.rsplit(".", 1)[-1] for n in ge_private.PRIVATE_NAMES}
    ge_modules = set()
    used: dict[str, list[str]] = {}
    for path in OURS:
        if path.name == "ge_private.py":
            continue
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"from great_expectations[\w.]* import \(?([^)]*?)\)?\n(?!\s)", text, re.S):
            for name in re.findall(r"\b(\w+)\b", m.group(1)):
                if name.startswith("_"):
                    used.setdefault(name, []).append(path.name)
                else:
                    ge_modules.add(name)
        for module in ge_modules:
            for name in re.findall(rf"\b{module}\.(_\w+)", text):
                used.setdefault(name, []).append(path.name)
        if "great_expectations" in text:
            for name in re.findall(r"\b(_EXTRA_\w+|_prescriptive_\w+|_add_mostly_pct_param|_render_\w+)\b", text):
                used.setdefault(name, []).append(path.name)
    assert used, "the scan found nothing: it is broken"
    unlisted = {name: files for name, files in used.items() if name not in listed}
    assert unlisted == {}, f"private GE names used but not listed in expectations/ge_private.py: {unlisted}"
