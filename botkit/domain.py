"""Value types shared by every layer: sides and the stable reason codes of verdicts."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    """Direction of a position (one-way mode)."""

    LONG = "long"
    SHORT = "short"

    @classmethod
    def parse(cls, value: str | Side) -> Side:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"side must be 'long' or 'short', got {value!r}") from None


class Reason(StrEnum):
    """Stable, machine-readable codes for why an intent was denied.

    The string values never change once released: journals, reports and users' alerting rely on them.
    """

    STOP_REQUIRED = "STOP_REQUIRED"
    STOP_WRONG_SIDE = "STOP_WRONG_SIDE"
    LEVERAGE_ABOVE_MAX = "LEVERAGE_ABOVE_MAX"
    RISK_ABOVE_BUDGET = "RISK_ABOVE_BUDGET"
    LIQ_TOO_CLOSE_TO_STOP = "LIQ_TOO_CLOSE_TO_STOP"
    MARGIN_INSUFFICIENT = "MARGIN_INSUFFICIENT"
    NOTIONAL_ABOVE_MAX = "NOTIONAL_ABOVE_MAX"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
