"""A tenant's RFM distribution in SQL: the medians its default thresholds come from, and the
number of contacts per class (the same metrics as ``rfm.RfmHistory``)."""

# SQL text from fixed fragments; values are $n arguments.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from tag_svc.segments.rfm import (
    CLASS_LEVELS,
    DEFAULT_RFM_THRESHOLDS,
    RFM_CLASSES,
    RFM_HORIZON_DAYS,
    RfmThresholds,
    thresholds_from_medians,
)
from tag_svc.segments.sql.params import AMOUNT_TYPES, Args, CompiledSql

__all__ = ["rfm_class_counts_query", "rfm_medians_query", "thresholds_from_medians_row"]


def _rfm_metrics_select(arg: Args, today: date, window_days: int, scope: str, group: str = "") -> str:
    """last_day / frequency / monetary of a contact's orders and refunds (see ``RfmHistory``)."""
    placed = arg("order-placed", "text")
    today_arg = arg(today, "date")
    window_first = arg(today - timedelta(days=window_days - 1), "date")
    in_window = f"f.day BETWEEN {window_first} AND {today_arg}"
    return (
        f"SELECT {group + ', ' if group else ''}"
        f"max(f.day) FILTER (WHERE f.event_type = {placed} AND f.day <= {today_arg}) AS last_day, "
        f"count(*) FILTER (WHERE f.event_type = {placed} AND {in_window}) AS frequency, "
        f"coalesce(sum(f.amount) FILTER (WHERE {in_window}), 0) AS monetary "
        f"FROM profile_facts f WHERE {scope} AND f.event_type = ANY({arg(list(AMOUNT_TYPES), 'text[]')})"
        f"{' GROUP BY ' + group if group else ''}"
    )


def _buyers_cte(arg: Args, tenant_id: str, today: date, window_days: int) -> str:
    """Per-buyer R, F and M of one tenant (the population the medians and class counts use)."""
    scope = f"f.tenant_id = {arg(tenant_id, 'text')}"
    metrics = _rfm_metrics_select(arg, today, window_days, scope, group="f.external_userid")
    horizon = arg(today - timedelta(days=RFM_HORIZON_DAYS - 1), "date")
    return (
        f"WITH m AS ({metrics}), "
        f"buyers AS (SELECT external_userid, ({arg(today, 'date')} - last_day) AS recency_days, "
        f"frequency, monetary FROM m WHERE last_day >= {horizon})"
    )


def rfm_medians_query(tenant_id: str, today: date, window_days: int = 365) -> CompiledSql:
    """One row: ``buyers`` and the lower medians ``recency_median``, ``frequency_median``,
    ``monetary_median`` (``percentile_disc(0.5)``, = ``statistics.median_low``) of a tenant."""
    arg = Args(1)
    cte = _buyers_cte(arg, tenant_id, today, window_days)
    sql = (
        f"{cte} SELECT count(*) AS buyers, "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY recency_days) AS recency_median, "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY frequency) AS frequency_median, "
        "percentile_disc(0.5) WITHIN GROUP (ORDER BY monetary) AS monetary_median FROM buyers"
    )
    return CompiledSql(sql, tuple(arg.values))


def thresholds_from_medians_row(
    row: Mapping[str, Any], window_days: int = 365, fallback: RfmThresholds = DEFAULT_RFM_THRESHOLDS
) -> RfmThresholds:
    """Default thresholds from a :func:`rfm_medians_query` row (like ``rfm.derive_thresholds``)."""
    if not row["buyers"]:
        return RfmThresholds(
            fallback.recent_within_days, fallback.frequent_min_orders, fallback.monetary_min, window_days
        )
    return thresholds_from_medians(
        int(row["recency_median"]), int(row["frequency_median"]), Decimal(row["monetary_median"]), window_days
    )


def rfm_class_counts_query(tenant_id: str, today: date, thresholds: RfmThresholds) -> CompiledSql:
    """Rows ``(rfm_class, contacts)`` for the classes that have buyers (facts' contacts)."""
    arg = Args(1)
    cte = _buyers_cte(arg, tenant_id, today, thresholds.window_days)
    recent = f"recency_days <= {arg(thresholds.recent_within_days, 'integer')}"
    frequent = f"frequency >= {arg(thresholds.frequent_min_orders, 'bigint')}"
    valuable = f"monetary >= {arg(thresholds.monetary_min, 'numeric')}"
    cases = " ".join(
        f"WHEN {' AND '.join(c if high else f'NOT ({c})' for c, high in zip((recent, frequent, valuable), CLASS_LEVELS[name], strict=True))} "
        f"THEN {arg(name, 'text')}"
        for name in RFM_CLASSES
    )
    sql = (
        f"{cte} SELECT CASE {cases} END AS rfm_class, count(*) AS contacts FROM buyers GROUP BY 1 ORDER BY 1"
    )
    return CompiledSql(sql, tuple(arg.values))
