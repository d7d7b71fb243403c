"""One registry of families: the CLI, bench and loaders discover models here.

Adding a family is one new file in ``genzoo/models`` that decorates its model
class with ``@register(...)`` (from ``genzoo.family``), plus its import in
``genzoo/models/__init__.py``. Importing this module imports every built-in
family.
"""

from __future__ import annotations

import genzoo.models  # noqa: F401  (importing registers every built-in family)
from genzoo.family import FAMILIES, FamilyInfo, FromData, family_info, register  # noqa: F401
from genzoo.models.base import GenerativeModel  # noqa: F401


def families() -> dict[str, FamilyInfo]:
    return dict(FAMILIES)


def get_family(name: str) -> FamilyInfo:
    return family_info(name)
