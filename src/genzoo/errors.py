"""The old home of ``GenzooError`` (now ``genzoo.core.errors``; also ``from genzoo import GenzooError``),
kept so that users' ``from genzoo.errors import GenzooError`` goes on working."""

from genzoo.core.errors import GenzooError, unknown  # noqa: F401
