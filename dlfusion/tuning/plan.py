"""Plans: which layers run fused, on how many cores, as JSON.

    {
      "version": 1,
      "model": {"layers": 175, "fingerprint": "3f2a..."},
      "target": "mlu100",
      "strategy": "dp",
      "latency_us": 1234.5,
      "groups": [{"layers": ["conv1", "bn1", "relu"], "cores": 8}, ...]
    }

Layers are named as `dlfusion.grouping.LayerGraph` names them (the ONNX
tensor names of their results). The fingerprint hashes the layer names, op
kinds and result shapes in program order, so a plan written for one model is
rejected on another with an error that names the first mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from dlfusion.dialects import nn
from dlfusion.errors import DlfusionError
from dlfusion.grouping import Group, LayerGraph

PLAN_VERSION = 1


def layer_signature(graph: LayerGraph) -> list[str]:
    """One line per layer: name, op and result shape."""
    return [
        f"{name} {op.name} {'x'.join(map(str, nn.shape_of(op.results[0])))}"
        for name, op in zip(graph.names, graph.layers)
    ]


def fingerprint(graph: LayerGraph) -> str:
    return hashlib.sha256("\n".join(layer_signature(graph)).encode()).hexdigest()[:16]


@dataclass
class Plan:
    groups: list[Group]
    target: str
    strategy: str = "manual"
    latency_us: float | None = None
    model_layers: int = 0
    model_fingerprint: str = ""
    signature: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    @staticmethod
    def for_graph(graph: LayerGraph, groups: list[Group], target: str, strategy: str, **kw) -> Plan:
        return Plan(
            groups=groups,
            target=target,
            strategy=strategy,
            model_layers=len(graph),
            model_fingerprint=fingerprint(graph),
            signature=layer_signature(graph),
            **kw,
        )

    def to_json(self) -> dict:
        return {
            "version": PLAN_VERSION,
            "model": {"layers": self.model_layers, "fingerprint": self.model_fingerprint,
                      "signature": self.signature},
            "target": self.target,
            "strategy": self.strategy,
            "latency_us": self.latency_us,
            "stats": self.stats,
            "groups": [{"layers": g.layers, "cores": g.cores} for g in self.groups],
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | Path) -> Plan:
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise DlfusionError(f"cannot read plan file: {exc.strerror}", where=str(path)) from None
        except json.JSONDecodeError as exc:
            raise DlfusionError(f"plan file is not JSON: {exc.msg} at line {exc.lineno}", where=str(path)) from None
        try:
            if doc.get("version") != PLAN_VERSION:
                raise KeyError(f"version {doc.get('version')!r} (expected {PLAN_VERSION})")
            groups = [
                Group([str(n) for n in g["layers"]], None if g.get("cores") is None else int(g["cores"]))
                for g in doc["groups"]
            ]
            model = doc.get("model", {})
            return Plan(
                groups=groups,
                target=str(doc.get("target", "")),
                strategy=str(doc.get("strategy", "manual")),
                latency_us=doc.get("latency_us"),
                model_layers=int(model.get("layers", 0)),
                model_fingerprint=str(model.get("fingerprint", "")),
                signature=[str(s) for s in model.get("signature", [])],
                stats=doc.get("stats", {}),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DlfusionError(f"malformed plan file: {exc}", where=str(path),
                                hint="write plans with fuse-layers{save=...} or dlfusion-tune") from None

    def check_matches(self, graph: LayerGraph, source: str = "plan") -> None:
        """Reject a plan written for another model, naming the first mismatch."""
        if self.model_fingerprint and self.model_fingerprint == fingerprint(graph):
            return
        mine = layer_signature(graph)
        if self.signature:
            for i, (want, got) in enumerate(zip(self.signature, mine)):
                if want != got:
                    raise DlfusionError(
                        f"the plan does not match the model: layer {i} is '{got}' in the model "
                        f"but '{want}' in the plan",
                        where=source,
                        hint="plan this model again",
                    )
            if len(self.signature) != len(mine):
                raise DlfusionError(
                    f"the plan does not match the model: the plan has {len(self.signature)} layers, "
                    f"the model {len(mine)}",
                    where=source,
                    hint="plan this model again",
                )
        names = set(graph.names)
        for g in self.groups:
            for n in g.layers:
                if n not in names:
                    raise DlfusionError(
                        f"the plan does not match the model: it names layer '{n}', which the model lacks",
                        where=source,
                        hint="plan this model again",
                    )
