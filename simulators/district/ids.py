"""Resident ID numbers (GB 11643): check characters, 18/15-digit forms, vectorised over arrays."""

from __future__ import annotations

import numpy as np

# ISO 7064 MOD 11-2 weights of the first 17 digits, and the check character per remainder.
WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
CHECK_CHARS = np.array(list("10X98765432"))


def check_char(body17: str) -> str:
    """The check character of one 17-digit body."""
    total = sum(int(d) * int(w) for d, w in zip(body17, WEIGHTS, strict=True))
    return str(CHECK_CHARS[total % 11])


def check_chars(bodies: np.ndarray) -> np.ndarray:
    """Check characters for an array of 17-digit bodies given as int64."""
    digits = np.empty((len(bodies), 17), dtype=np.int64)
    rest = bodies.astype(np.int64).copy()
    for pos in range(16, -1, -1):
        digits[:, pos] = rest % 10
        rest //= 10
    return CHECK_CHARS[(digits @ WEIGHTS) % 11]


def make_ids(division: np.ndarray, birth_ymd: np.ndarray, seq: np.ndarray) -> list[str]:
    """18-character IDs from division codes (int), birth dates (int YYYYMMDD) and 3-digit sequences."""
    bodies = division.astype(np.int64) * 10**11 + birth_ymd.astype(np.int64) * 1000 + seq
    checks = check_chars(bodies)
    return [f"{b:017d}{c}" for b, c in zip(bodies.tolist(), checks.tolist(), strict=True)]


def is_valid(id18: str) -> bool:
    """True if an 18-character ID has 17 digits and the right check character (nothing else)."""
    if len(id18) != 18 or not id18[:17].isdigit():
        return False
    return check_char(id18[:17]) == id18[17].upper()


def to_legacy15(id18: str) -> str:
    """The 15-digit form an ID had before 1999: no century, no check character."""
    return id18[:6] + id18[8:17]


def from_legacy15(id15: str) -> str:
    """Upgrade a 15-digit ID to 18 characters (century 19, new check character)."""
    body = id15[:6] + "19" + id15[6:]
    return body + check_char(body)
