"""Masking of personal data in anything a person reads: IDs keep first 6 + last 4, phones first 3 + last 4."""

from __future__ import annotations


def mask_id(value: str | None) -> str | None:
    """'420102199001011234' -> '420102********1234'; short or empty values are fully hidden."""
    if not value:
        return value
    v = value.strip()
    if len(v) < 10:
        return "*" * len(v)
    return v[:6] + "*" * (len(v) - 10) + v[-4:]


def mask_phone(value: str | None) -> str | None:
    """'13912345678' -> '139****5678' (formatting characters are dropped first)."""
    if not value:
        return value
    digits = "".join(ch for ch in value if ch.isdigit())
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]
