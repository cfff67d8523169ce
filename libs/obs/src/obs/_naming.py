"""The naming convention shared by metrics, alert rules and history: ``mycelium_<lib>_<what>_<unit>``.

Kept in one place so a metric declared by a library and a rule written by an operator agree on
what a valid name looks like, and so every rejection names the field and the valid shape.
"""

from __future__ import annotations

import re

from obs._errors import MetricError

__all__ = ["PREFIX", "check_component", "check_label_names", "check_metric_part", "full_metric_name"]

PREFIX = "mycelium"
_PART = re.compile(r"[a-z][a-z0-9_]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Labels prometheus-client or the exposition format reserve for itself.
_RESERVED_LABELS = frozenset({"le", "quantile"})


def check_metric_part(field: str, value: object) -> str:
    """A component, metric name or unit: lower snake case, starting with a letter."""
    if not isinstance(value, str) or not _PART.match(value) or "__" in value or value.endswith("_"):
        raise MetricError(
            field,
            f"{value!r} is not valid; use lower snake case matching [a-z][a-z0-9_]* "
            "without '__' or a trailing '_' (e.g. 'peers_connected')",
        )
    return value


def check_component(value: object) -> str:
    """The library or component a metric belongs to (``meshnet``, ``dram``...)."""
    return check_metric_part("component", value)


def check_label_names(value: object) -> tuple[str, ...]:
    """Label names as Prometheus accepts them, unique, not reserved."""
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise MetricError("labels", f"expected a tuple of label names, got {value!r}")
    names: list[str] = []
    for name in value:
        if not isinstance(name, str) or not _LABEL.match(name) or name.startswith("__"):
            raise MetricError(
                "labels",
                f"label name {name!r} is not valid; use [a-zA-Z_][a-zA-Z0-9_]* not starting with '__'",
            )
        if name in _RESERVED_LABELS:
            raise MetricError("labels", f"label name {name!r} is reserved by Prometheus ('le', 'quantile')")
        if name in names:
            raise MetricError("labels", f"label name {name!r} appears twice")
        names.append(name)
    return tuple(names)


def full_metric_name(component: str, name: str, unit: str | None) -> str:
    """``mycelium_<component>_<name>[_<unit>]``; the unit is not repeated if the name ends with it."""
    check_component(component)
    check_metric_part("name", name)
    if name.startswith(f"{PREFIX}_"):
        raise MetricError("name", f"{name!r} must not start with '{PREFIX}_': the prefix is added for you")
    full = f"{PREFIX}_{component}_{name}"
    if unit is not None:
        check_metric_part("unit", unit)
        if not name.endswith(f"_{unit}") and name != unit:
            full = f"{full}_{unit}"
    return full
