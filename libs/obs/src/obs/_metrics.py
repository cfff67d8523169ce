"""Declaring Prometheus metrics per component, idempotently, under one naming convention.

Many instances of one protocol can live in one process (the simulator runs dozens of nodes), and
each declares its metrics on construction. prometheus-client refuses a second registration of the
same name, so `Metrics` remembers what it declared on each registry and hands back the existing
collector when the declaration is identical, and raises `MetricClashError` when it is not (same
name, different type, labels or buckets is a bug that would corrupt dashboards silently).
"""

from __future__ import annotations

import itertools
import math
import threading
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

import attrs
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from obs._errors import MetricClashError, MetricError
from obs._naming import check_component, check_label_names, full_metric_name

__all__ = ["DEFAULT_BUCKETS", "Metrics"]

# prometheus-client's default latency buckets (5 ms .. 10 s); fine for RPCs on a LAN.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

_C = TypeVar("_C", Counter, Gauge, Histogram)


@attrs.frozen
class _Declaration:
    kind: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] | None
    collector: Any


_lock = threading.Lock()
# Per registry: full metric name -> what was declared. Weak keys so throwaway test registries go away.
_declared: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, _Declaration]] = weakref.WeakKeyDictionary()


def _check_buckets(buckets: object) -> tuple[float, ...]:
    if isinstance(buckets, str) or not isinstance(buckets, Sequence) or not buckets:
        raise MetricError("buckets", f"expected a non-empty sequence of increasing numbers, got {buckets!r}")
    values: list[float] = []
    for b in buckets:
        if isinstance(b, bool) or not isinstance(b, int | float) or math.isnan(b):
            raise MetricError("buckets", f"bucket bound {b!r} is not a number")
        values.append(float(b))
    if any(later <= earlier for earlier, later in itertools.pairwise(values)):
        raise MetricError("buckets", f"bucket bounds must be strictly increasing, got {values}")
    if values[-1] != math.inf:
        values.append(math.inf)
    return tuple(values)


class Metrics:
    """The metric factory of one component (a library name such as ``"meshnet"``).

    ``Metrics("meshnet").gauge("peers_connected", "...", unit="count")`` declares
    ``mycelium_meshnet_peers_connected_count`` on the process-wide prometheus-client registry;
    pass ``registry=CollectorRegistry()`` for an isolated one (tests, one registry per node).
    """

    def __init__(self, component: str, registry: CollectorRegistry | None = None) -> None:
        self.component = check_component(component)
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise MetricError("registry", f"expected a prometheus_client CollectorRegistry, got {registry!r}")
        self.registry: CollectorRegistry = REGISTRY if registry is None else registry

    def __repr__(self) -> str:
        return f"Metrics(component={self.component!r})"

    def name_of(self, name: str, unit: str | None = None) -> str:
        """The full exposed family name a declaration with these arguments gets."""
        return full_metric_name(self.component, name, unit)

    def counter(
        self, name: str, documentation: str, *, labels: Sequence[str] = (), unit: str | None = None
    ) -> Counter:
        """A monotonically increasing count; exposed with the ``_total`` suffix."""
        if isinstance(name, str) and name.endswith("_total"):
            raise MetricError("name", f"{name!r}: leave out '_total', counters get it appended")
        return self._declare(Counter, "counter", name, documentation, labels, unit, None)

    def gauge(
        self, name: str, documentation: str, *, labels: Sequence[str] = (), unit: str | None = None
    ) -> Gauge:
        """A value that goes up and down (connections, buffer fill, lag)."""
        return self._declare(Gauge, "gauge", name, documentation, labels, unit, None)

    def histogram(
        self,
        name: str,
        documentation: str,
        *,
        labels: Sequence[str] = (),
        unit: str | None = None,
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        """A distribution (latency, sizes) with cumulative buckets; ``+Inf`` is added if missing."""
        return self._declare(
            Histogram, "histogram", name, documentation, labels, unit, _check_buckets(buckets)
        )

    def _declare(
        self,
        cls: type[_C],
        kind: str,
        name: str,
        documentation: str,
        labels: Sequence[str],
        unit: str | None,
        buckets: tuple[float, ...] | None,
    ) -> _C:
        full = full_metric_name(self.component, name, unit)
        label_names = check_label_names(tuple(labels) if isinstance(labels, list) else labels)
        if not isinstance(documentation, str) or not documentation.strip():
            raise MetricError("documentation", f"metric {full!r} needs a non-empty help text")
        with _lock:
            table = _declared.setdefault(self.registry, {})
            existing = table.get(full)
            if existing is not None:
                if (existing.kind, existing.labels, existing.buckets) != (kind, label_names, buckets):
                    raise MetricClashError(
                        "name",
                        f"{full!r} is already declared as a {existing.kind} with labels "
                        f"{existing.labels}{_describe_buckets(existing.buckets)}; this declaration asks "
                        f"for a {kind} with labels {label_names}{_describe_buckets(buckets)}",
                    )
                collector: _C = existing.collector
                return collector
            kwargs: dict[str, Any] = {"labelnames": label_names, "registry": self.registry}
            if buckets is not None:
                kwargs["buckets"] = buckets
            try:
                collector = cls(full, documentation, **kwargs)
            except ValueError as exc:
                # Registered by someone else (not through obs) on the same registry.
                raise MetricClashError("name", f"{full!r} cannot be registered: {exc}") from exc
            table[full] = _Declaration(kind, label_names, buckets, collector)
            return collector


def _describe_buckets(buckets: tuple[float, ...] | None) -> str:
    return "" if buckets is None else f" and buckets {buckets}"
