"""One registry of families: the CLI, bench and loaders discover models here.

Adding a family is one new file in ``genzoo/models`` that decorates its model
class with ``@register(...)``, plus its import in ``genzoo/models/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genzoo.errors import unknown


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    model_class: type
    description: str
    data_kinds: tuple[str, ...]  # "image", "points", "text"
    variants: dict[str, dict] = field(default_factory=dict)  # variant -> config overrides

    @property
    def capabilities(self) -> frozenset[str]:
        return self.model_class.capabilities

    @property
    def likelihood(self) -> str | None:
        return self.model_class.likelihood


_FAMILIES: dict[str, FamilyInfo] = {}


def register(name: str, description: str, data_kinds=("image", "points"), variants: dict | None = None):
    """Class decorator: make a GenerativeModel subclass available as family ``name``."""

    def wrap(cls):
        cls.family = name
        _FAMILIES[name] = FamilyInfo(name, cls, description, tuple(data_kinds), variants or {"default": {}})
        return cls

    return wrap


def families() -> dict[str, FamilyInfo]:
    import genzoo.models  # noqa: F401  (importing registers every built-in family)

    return dict(_FAMILIES)


def get_family(name: str) -> FamilyInfo:
    fams = families()
    if name not in fams:
        raise unknown("family", name, fams)
    return fams[name]
