"""The shapes of the dicts the package returns (Model.plan(), backends()), for type checkers."""

from __future__ import annotations

from typing import Dict, List, Optional, TypedDict


class DeviceInfo(TypedDict):
    name: str  # "cpu", "cuda:0"
    description: str
    free_bytes: Optional[int]  # None when the backend does not say
    total_bytes: Optional[int]


class BackendInfo(TypedDict):
    name: str  # "cpu", "ref"
    path: str  # the module file; "" for the built-in CPU backend
    description: str
    score: int  # what the module's score() said; higher is preferred
    has_streams: bool
    devices: List[DeviceInfo]
    operators: List[str]  # "cpu.mla_attention" …, sorted


class Placement(TypedDict):
    module: str  # "model.layers.3.mlp.experts"
    impl: str  # "cpu.experts"
    generate_device: str  # where decode steps run
    prefill_device: str  # where batches of more than one token run
    options: Dict[str, str]  # the rule's kwargs
    why: str  # the rule line that chose it, or the default's reason


class Plan(TypedDict):
    placements: List[Placement]
    warnings: List[str]
