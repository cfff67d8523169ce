"""``mycelium recommend``: Endomycete or Endophyte for an application, with the reasons (R19, R26.4).

An *Endomycete* is natively distributed: stateless or self-replicating, several replicas, run
with ordinary Kubernetes patterns. An *Endophyte* is an ordinary app or VM that the network makes
highly available (replicated RAM and disk); it goes into a *dedicated* Virtual Distributed
Computer when it needs strong isolation (security level, privileged access, devices, a foreign
OS) or is large, otherwise into a *shared* one. The reader accepts an OCI image config (JSON), a
compose file or Kubernetes manifests (YAML); the decision is a pure function of what it finds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs
import yaml

from mycelium._errors import MyceliumError

SecurityLevel = Literal["normal", "high"]
_LARGE_CPUS = 8.0
_LARGE_MEMORY_GIB = 32.0


class RecommendError(MyceliumError):
    """The application description could not be read."""


@attrs.frozen
class Workload:
    """What the recommender needs to know about one workload, whatever format it came from."""

    name: str
    replicas: int = 1
    stateful: bool = False
    privileged: bool = False
    host_access: bool = False  # host network / PID / devices / hostPath
    foreign_os: str = ""
    declared_distributed: bool = False
    cpus: float = 0.0
    memory_gib: float = 0.0


@attrs.frozen
class Recommendation:
    workload: str
    model: Literal["Endomycete", "Endophyte"]
    vdc: Literal["", "dedicated", "shared"]
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "model": self.model,
            "vdc": self.vdc or None,
            "reasons": list(self.reasons),
        }


def recommend(w: Workload, security: SecurityLevel = "normal") -> Recommendation:
    reasons: list[str] = []
    isolation: list[str] = []
    if w.privileged:
        isolation.append("runs privileged, so it needs VM isolation rather than a shared kernel")
    if w.host_access:
        isolation.append("uses host devices, network or paths, which only a VM can give it safely")
    if w.foreign_os:
        isolation.append(f"targets {w.foreign_os}, which needs its own kernel (a VM)")
    if security == "high":
        isolation.append("security level 'high' asks for a dedicated Virtual Distributed Computer")
    large = w.cpus >= _LARGE_CPUS or w.memory_gib >= _LARGE_MEMORY_GIB
    distributed = w.declared_distributed or (w.replicas > 1 and not w.stateful)
    if distributed and not isolation:
        if w.declared_distributed:
            reasons.append("declares itself natively distributed")
        if w.replicas > 1:
            reasons.append(f"already runs {w.replicas} replicas")
        if not w.stateful:
            reasons.append("keeps no local state, so Kubernetes can restart or move any replica")
        return Recommendation(w.name, "Endomycete", "", tuple(reasons))
    if w.stateful:
        reasons.append(
            "keeps local state, so the network must replicate its memory and disk to keep it available"
        )
    if w.replicas <= 1:
        reasons.append("runs as a single instance, so high availability has to come from the network")
    reasons += isolation
    dedicated = bool(isolation) or large
    if large:
        reasons.append(
            f"is large ({w.cpus:g} CPUs, {w.memory_gib:g} GiB): it gets a dedicated VDC to avoid noisy neighbours"
        )
    if not dedicated:
        reasons.append("needs no special isolation, so a shared VDC is cheaper")
    return Recommendation(w.name, "Endophyte", "dedicated" if dedicated else "shared", tuple(reasons))


def _cpu(value: Any) -> float:
    s = str(value)
    try:
        return float(s[:-1]) / 1000 if s.endswith("m") else float(s)
    except ValueError:
        return 0.0


def _gib(value: Any) -> float:
    s = str(value).strip()
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10, "k": 1e3 / 2**30, "M": 1e6 / 2**30, "G": 1e9 / 2**30,
             "m": 2**-10, "g": 1, "b": 2**-30}  # fmt: skip
    for suffix, factor in units.items():
        if s.endswith(suffix):
            try:
                return float(s[: -len(suffix)]) * factor
            except ValueError:
                return 0.0
    try:
        return float(s) / 2**30
    except ValueError:
        return 0.0


def _from_oci(doc: dict[str, Any], name: str) -> list[Workload]:
    config = doc.get("config") or {}
    labels = config.get("Labels") or {}
    return [
        Workload(
            name=labels.get("org.opencontainers.image.title", name),
            stateful=bool(config.get("Volumes")),
            foreign_os="" if doc.get("os", "linux") == "linux" else str(doc.get("os")),
            declared_distributed=labels.get("io.mycelium.distributed") == "true",
        )
    ]


def _from_compose(doc: dict[str, Any]) -> list[Workload]:
    out = []
    for name, svc in (doc.get("services") or {}).items():
        svc = svc or {}
        deploy = svc.get("deploy") or {}
        limits = (deploy.get("resources") or {}).get("limits") or {}
        named_volumes = [v for v in svc.get("volumes") or [] if not str(v).startswith(("/", "./"))]
        out.append(
            Workload(
                name=name,
                replicas=int(deploy.get("replicas", 1)),
                stateful=bool(svc.get("volumes")),
                privileged=bool(svc.get("privileged")) or "SYS_ADMIN" in (svc.get("cap_add") or []),
                host_access=svc.get("network_mode") == "host"
                or bool(svc.get("devices"))
                or len(named_volumes) < len(svc.get("volumes") or []),
                foreign_os="windows" if "windows" in str(svc.get("platform", "")) else "",
                declared_distributed=(svc.get("labels") or {}).get("io.mycelium.distributed") == "true",
                cpus=_cpu(limits.get("cpus", 0)),
                memory_gib=_gib(limits.get("memory", 0)),
            )
        )
    return out


def _from_k8s(docs: list[dict[str, Any]]) -> list[Workload]:
    out = []
    for doc in docs:
        kind = doc.get("kind")
        if kind not in ("Deployment", "StatefulSet", "DaemonSet", "Pod"):
            continue
        spec = doc.get("spec") or {}
        pod = spec if kind == "Pod" else (spec.get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or []
        sec = [c.get("securityContext") or {} for c in containers]
        limits = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
        out.append(
            Workload(
                name=(doc.get("metadata") or {}).get("name", kind),
                replicas=int(spec.get("replicas", 1)) if kind != "Pod" else 1,
                stateful=kind == "StatefulSet"
                or any("persistentVolumeClaim" in v for v in pod.get("volumes") or []),
                privileged=any(s.get("privileged") for s in sec),
                host_access=bool(pod.get("hostNetwork") or pod.get("hostPID"))
                or any("hostPath" in v for v in pod.get("volumes") or []),
                foreign_os="windows"
                if (pod.get("nodeSelector") or {}).get("kubernetes.io/os") == "windows"
                else "",
                declared_distributed=((doc.get("metadata") or {}).get("labels") or {}).get(
                    "io.mycelium.distributed"
                )
                == "true",
                cpus=sum(_cpu(lim.get("cpu", 0)) for lim in limits),
                memory_gib=sum(_gib(lim.get("memory", 0)) for lim in limits),
            )
        )
    return out


def read_description(path: Path) -> list[Workload]:
    """Parse an OCI image config, a compose file or Kubernetes manifests into workloads."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecommendError(f"cannot read {path}: {exc.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise RecommendError(f"{path} is neither JSON nor YAML: {exc}") from None
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise RecommendError(f"{path} holds no application description (expected a mapping)")
    first = docs[0]
    if "services" in first:
        workloads = _from_compose(first)
    elif "apiVersion" in first and "kind" in first:
        workloads = _from_k8s(docs)
    elif "config" in first or "architecture" in first or "rootfs" in first:
        workloads = _from_oci(first, path.stem)
    else:
        raise RecommendError(
            f"{path}: not an OCI image config (config/architecture keys), a compose file (services) "
            "or Kubernetes manifests (apiVersion/kind)"
        )
    if not workloads:
        raise RecommendError(f"{path} describes no workload (Deployment, StatefulSet, Pod, compose service)")
    return workloads


def recommend_file(path: Path, security: SecurityLevel = "normal") -> list[Recommendation]:
    return [recommend(w, security) for w in read_description(path)]


__all__ = ["Recommendation", "RecommendError", "Workload", "read_description", "recommend", "recommend_file"]
