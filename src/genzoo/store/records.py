"""What the store keeps, as plain dataclasses (no database types leak out of a backend).

A generation is one call of a sampler: its output (text, or bytes such as a PNG or a .npy of the
raw samples, with their sha256), the provenance manifest that replays it (``genzoo.runs.manifest``),
the model that made it, who asked, the prompt, session / conversation / parent links, quality
scores, feedback, and whether it is synthetic (model output) or real (human-written or imported
data), so that training sets never mix the two by accident.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

ROLES = ("admin", "writer", "reader")
KINDS = ("text", "image", "points", "array", "audio", "table")  # audio: WAV or MIDI bytes; table: CSV bytes
VISIBILITIES = ("private", "shared")


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


@dataclass
class User:
    id: int
    name: str
    role: str
    created_at: float


@dataclass
class ModelRecord:
    """A model as the store knows it. ``lineage``: which run, data and parent model made it."""

    name: str
    family: str
    variant: str = ""
    config: dict = field(default_factory=dict)
    config_sha256: str | None = None
    checkpoint_uri: str | None = None
    checkpoint_sha256: str | None = None
    checkpoint_blob: bytes | None = None  # small checkpoints may be kept inside the store
    metrics: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    parent_id: int | None = None
    id: int | None = None
    created_at: float | None = None


@dataclass
class NewGeneration:
    """What a caller hands to ``Store.record``; the store adds id, owner, sha256 and time."""

    kind: str
    text: str | None = None
    content: bytes | None = None
    content_type: str | None = None
    prompt: str | None = None
    manifest: dict = field(default_factory=dict)
    model_id: int | None = None
    family: str | None = None
    session_id: str | None = None
    conversation_id: str | None = None
    turn: int | None = None
    parent_id: int | None = None
    synthetic: bool = True
    visibility: str = "private"
    quality: dict = field(default_factory=dict)
    seed: int | None = None
    embedding: Any = None  # a precomputed vector (else the store's encoder makes one for text)
    space: str | None = None  # the embedding's space when it is not the store encoder's (e.g. "digits-cnn-64")


@dataclass
class Generation:
    id: int
    kind: str
    owner: str
    visibility: str
    created_at: float
    text: str | None = None
    content: bytes | None = None
    content_type: str | None = None
    content_sha256: str | None = None
    prompt: str | None = None
    prompt_id: int | None = None
    manifest: dict = field(default_factory=dict)
    model_id: int | None = None
    model_name: str | None = None
    family: str | None = None
    session_id: str | None = None
    conversation_id: str | None = None
    parent_id: int | None = None
    synthetic: bool = True
    quality: dict = field(default_factory=dict)
    seed: int | None = None
    rating: float | None = None  # mean of the feedback ratings, None when unrated


@dataclass
class Feedback:
    id: int
    generation_id: int
    user: str
    rating: float | None
    label: str | None
    comment: str | None
    created_at: float


@dataclass
class AuditEntry:
    id: int
    at: float
    user: str | None
    action: str
    target: str | None
    target_id: int | None
    detail: dict


@dataclass
class Hit:
    """One search result: the generation, its fused score and its rank in each list (None: absent)."""

    generation: Generation
    score: float
    keyword_rank: int | None = None
    vector_rank: int | None = None
