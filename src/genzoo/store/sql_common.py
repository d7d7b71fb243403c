"""Reads whose SQL is the same on SQLite and PostgreSQL but for the parameter placeholder.

A backend mixes this in and supplies ``PH`` (``?`` or ``%s``), ``_one(sql, params)`` and
``_fetch(sql, params)``, each on the connection it reads from (PostgreSQL: the standby when one is set).
"""

from __future__ import annotations

import json

from genzoo.store.records import AuditEntry, Feedback, Generation


class SharedReads:
    PH = "?"

    def _fetch(self, sql: str, params=()) -> list:
        raise NotImplementedError

    def get_generation(self, generation_id: int) -> Generation | None:
        return self.get_generations([generation_id]).get(generation_id)

    def visible(self, generation_id: int, viewer: int | None) -> bool:
        row = self._one(f"SELECT owner_id, visibility FROM generations WHERE id = {self.PH}", (generation_id,))
        return row is not None and (viewer is None or row[1] == "shared" or row[0] == viewer)

    def feedback_for(self, generation_id: int) -> list[Feedback]:
        rows = self._fetch("SELECT f.id, f.generation_id, u.name, f.rating, f.label, f.comment, f.created_at FROM feedback f "
                           f"JOIN users u ON u.id = f.user_id WHERE f.generation_id = {self.PH} ORDER BY f.id", (generation_id,))
        return [Feedback(*r) for r in rows]

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        rows = self._fetch("SELECT a.id, a.at, u.name, a.action, a.target, a.target_id, a.detail FROM audit_log a "
                           f"LEFT JOIN users u ON u.id = a.user_id ORDER BY a.id DESC LIMIT {self.PH}", (limit,))
        return [AuditEntry(*r[:6], json.loads(r[6])) for r in rows]
