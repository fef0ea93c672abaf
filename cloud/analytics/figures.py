"""How figures are rounded, one rule for every view: half away from zero on the decimal value
(0.15 s → 0.2 s), so a figure computed by hand from the same data gives the same digits.
"""

from decimal import ROUND_HALF_UP, Decimal

#: rates (fractions 0..1), shares
RATE_PLACES = 4
#: durations in seconds
SECONDS_PLACES = 1
#: the mean rating (1..5)
SCORE_PLACES = 2


def rounded(value: float | Decimal | None, places: int) -> float | None:
    if value is None:
        return None
    exact = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return float(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def seconds(value: float | Decimal | None) -> float | None:
    return rounded(value, SECONDS_PLACES)


def rate(part: int, whole: int) -> float | None:
    """part / whole to four places, None when there is nothing to divide by."""
    if whole == 0:
        return None
    return rounded(Decimal(part) / Decimal(whole), RATE_PLACES)
