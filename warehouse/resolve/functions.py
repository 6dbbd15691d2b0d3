"""Character-level string similarity for SQL: DuckDB's own functions count UTF-8 bytes (duckdb#25113)."""

from __future__ import annotations

import contextlib

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.func import FunctionNullHandling, PythonUDFType
from duckdb.sqltypes import DOUBLE, VARCHAR
from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler, Levenshtein


def _pairwise(scorer, a: pa.Array, b: pa.Array, fill: float) -> pa.Array:
    # cpdist scores element i of a against element i of b in C++; nulls are scored on '' and masked.
    left = pc.fill_null(a, "").to_pylist()
    right = pc.fill_null(b, "").to_pylist()
    scores = process.cpdist(left, right, scorer=scorer, workers=1).astype(np.float64)
    mask = pc.or_(pc.is_null(a), pc.is_null(b)).to_numpy(zero_copy_only=False)
    scores[mask] = fill
    return pa.array(scores, mask=mask)


def char_jaro_winkler(a: pa.Array, b: pa.Array) -> pa.Array:
    """Jaro-Winkler similarity over characters, not UTF-8 bytes."""
    return _pairwise(JaroWinkler.normalized_similarity, a, b, 0.0)


def char_levenshtein(a: pa.Array, b: pa.Array) -> pa.Array:
    """Levenshtein distance over characters (张伟/张玮 = 1, not the byte-level 3)."""
    return _pairwise(Levenshtein.distance, a, b, 0.0)


FUNCTIONS = {"char_jaro_winkler": char_jaro_winkler, "char_levenshtein": char_levenshtein}


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Make the character-level functions callable from SQL on `con` (idempotent)."""
    for name, fn in FUNCTIONS.items():
        with contextlib.suppress(duckdb.InvalidInputException, duckdb.CatalogException):
            con.remove_function(name)  # registered by an earlier run on this connection
        con.create_function(name, fn, [VARCHAR, VARCHAR], DOUBLE, type=PythonUDFType.ARROW,
                            null_handling=FunctionNullHandling.SPECIAL, side_effects=False)
