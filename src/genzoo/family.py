"""The catalog of families: what ``@register`` records about each model class.

A leaf module: model files import ``register`` from here and nothing imports
the models back, so there is no import cycle. ``genzoo.registry`` imports
every built-in family and is what the CLI, bench and loaders ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genzoo.errors import GenzooError, unknown

KINDS = ("image", "points", "tokens", "domains")  # the data kinds a dataset can declare (domains: two image sets, A and B)


class FromData:
    """A variant setting read from the dataset's spec, e.g. ``FromData("num_classes")`` for a
    conditional variant; ``required`` refuses data that lacks it."""

    def __init__(self, key: str, required: bool = True):
        self.key, self.required = key, required

    def resolve(self, data_spec: dict, family: str, variant: str):
        value = data_spec.get(self.key)
        if self.required and not value:
            raise GenzooError(f"the {variant} variant of {family} needs data with {self.key} (labelled data); this dataset has none")
        return value

    def __repr__(self) -> str:
        return f"<{self.key} of the data>"


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    model_class: type
    description: str
    data_kinds: tuple[str, ...]  # which of KINDS it handles
    variants: dict[str, dict] = field(default_factory=dict)  # variant -> config overrides (values may be FromData)

    @property
    def capabilities(self) -> frozenset[str]:
        return self.model_class.capabilities

    @property
    def likelihood(self) -> str | None:
        return self.model_class.likelihood

    @property
    def default_variant(self) -> str:
        return next(iter(self.variants))

    def variant_overrides(self, variant: str, data_spec: dict) -> dict:
        """The config fields ``variant`` sets for this data (the one place variants are applied)."""
        if variant not in self.variants:
            raise GenzooError(f"unknown variant {variant!r} of {self.name}; valid variants: {', '.join(self.variants)}")
        return {k: v.resolve(data_spec, self.name, variant) if isinstance(v, FromData) else v
                for k, v in self.variants[variant].items()}


FAMILIES: dict[str, FamilyInfo] = {}


def register(name: str, description: str, data_kinds=("image", "points"), variants: dict | None = None):
    """Class decorator: make a GenerativeModel subclass available as family ``name``."""
    bad = set(data_kinds) - set(KINDS)
    if bad:
        raise ValueError(f"family {name}: unknown data kinds {sorted(bad)}; valid: {KINDS}")

    def wrap(cls):
        cls.family = name
        FAMILIES[name] = FamilyInfo(name, cls, description, tuple(data_kinds), variants or {"default": {}})
        return cls

    return wrap


def family_info(name: str) -> FamilyInfo:
    """A family already registered (its module imported); ``genzoo.registry.get_family`` imports the built-ins first."""
    if name not in FAMILIES:
        raise unknown("family", name, FAMILIES)
    return FAMILIES[name]
