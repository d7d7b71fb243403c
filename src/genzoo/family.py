"""The catalog of families: what ``@register`` records about each model class.

A leaf module: model files import ``register`` from here and nothing imports
the models back, so there is no import cycle. ``genzoo.registry`` imports
every built-in family and is what the CLI, bench and loaders ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from genzoo.core.errors import GenzooError, unknown

KINDS = ("image", "points", "tokens", "domains", "pairs", "audio", "table")  # the data kinds a dataset can declare (domains: two image sets, A and B; pairs: input/target texts; audio: mu-law waveforms; table: encoded rows of a table, see genzoo.data.table)


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
    # variant -> the data kinds it handles, where fewer than the family's (a conditional variant needs
    # labelled images); variants not named here handle every kind in data_kinds
    variant_kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # data kind -> the variant used when none is named, where it is not the first variant (diffusion on
    # audio: mel, which the measurements favour); every other kind gets the first variant
    default_variants: dict[str, str] = field(default_factory=dict)

    @property
    def capabilities(self) -> frozenset[str]:
        return self.model_class.capabilities

    @property
    def likelihood(self) -> str | None:
        return self.model_class.likelihood

    @property
    def default_variant(self) -> str:
        """The variant used when none is named and the data kind is not known (the first)."""
        return next(iter(self.variants))

    def default_variant_for(self, kind: str | None) -> str:
        """The variant used when none is named, for data of ``kind``."""
        return self.default_variants.get(kind, self.default_variant)

    def kinds_of(self, variant: str) -> tuple[str, ...]:
        """The data kinds ``variant`` handles (the family's, unless the variant declared fewer)."""
        return self.variant_kinds.get(variant, self.data_kinds)

    def handles(self, variant: str, kind: str) -> bool:
        return kind in self.kinds_of(variant)

    def variant_overrides(self, variant: str, data_spec: dict) -> dict:
        """The config fields ``variant`` sets for this data (the one place variants are applied);
        refuses data of a kind the variant does not handle."""
        if variant not in self.variants:
            raise GenzooError(f"unknown variant {variant!r} of {self.name}; valid variants: {', '.join(self.variants)}")
        kind = data_spec.get("kind")
        if kind is not None and not self.handles(variant, kind):
            raise GenzooError(f"the {variant} variant of {self.name} handles {', '.join(self.kinds_of(variant))} data, "
                              f"not {kind} data; pick another variant ({', '.join(v for v in self.variants if self.handles(v, kind))})")
        return {k: v.resolve(data_spec, self.name, variant) if isinstance(v, FromData) else v
                for k, v in self.variants[variant].items()}


FAMILIES: dict[str, FamilyInfo] = {}


def register(name: str, description: str, data_kinds=("image", "points"), variants: dict | None = None,
             variant_kinds: dict | None = None, default_variants: dict | None = None):
    """Class decorator: make a GenerativeModel subclass available as family ``name``.
    ``variant_kinds`` narrows the data kinds of some variants (default: every variant, every kind);
    ``default_variants`` maps a data kind to the variant used when none is named (default: the first)."""
    bad = set(data_kinds) - set(KINDS)
    if bad:
        raise ValueError(f"family {name}: unknown data kinds {sorted(bad)}; valid: {KINDS}")
    variants = variants or {"default": {}}
    narrowed = {v: tuple(k) for v, k in (variant_kinds or {}).items()}
    for v, kinds in narrowed.items():
        if v not in variants or not kinds or not set(kinds) <= set(data_kinds):
            raise ValueError(f"family {name}: variant_kinds[{v!r}] = {kinds} must name a variant and some of {tuple(data_kinds)}")

    def wrap(cls):
        info = FamilyInfo(name, cls, description, tuple(data_kinds), variants, narrowed, dict(default_variants or {}))
        for kind, v in info.default_variants.items():
            if v not in variants or not info.handles(v, kind):  # handles: the variant's kinds, within the family's
                raise ValueError(f"family {name}: default_variants[{kind!r}] = {v!r} must be a variant that handles {kind} data")
        cls.family = name
        FAMILIES[name] = info
        return cls

    return wrap


def family_info(name: str) -> FamilyInfo:
    """A family already registered (its module imported); ``genzoo.registry.get_family`` imports the built-ins first."""
    if name not in FAMILIES:
        raise unknown("family", name, FAMILIES)
    return FAMILIES[name]
