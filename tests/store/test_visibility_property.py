"""Property test: no read path returns or reveals what its caller may not see (SQLite and PostgreSQL).

A hypothesis state machine runs random sequences of operations by random users and roles against a
fresh store (the local admin creates users with roles; writers record private or shared generations,
copies of what they see and children of it, give feedback, extract graph entities, index RAG
documents from temporary files, record RAG answers; the admin changes roles, revokes and reissues
keys) and keeps a model of who owns what and what is shared. Every text it writes carries distinctive
marker words (``zqx`` + 7 letters: a generation's text, prompt and family, a feedback comment and
label, a document's text and file name). After every step, for every user, every read path is
checked against the model: a caller sees its own records and shared ones (an admin: all), a marker of
a record the caller may not see appears in nothing a read returns (results are serialised with repr
and searched), counts match the visible records only, and a record the caller may not see is refused
with exactly the message of one that does not exist. See benchmarks/store/property_test.md.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import string
import tempfile
from collections import defaultdict
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from genzoo.core.errors import GenzooError
from genzoo.store import graph, rag, stats
from genzoo.store.api import AccessDenied, Store
from genzoo.store.encoders import HashingEncoder
from genzoo.store.export import export
from genzoo.store.records import ModelRecord

ENCODER = HashingEncoder(64)
ROLES = ("reader", "writer", "admin")
MAX_USERS = 4
MARKER = re.compile(r"zqx[a-z]{7}")
COMMON = "launch plan"  # in every text: broad queries match many records of many owners
EXAMPLES = {"sqlite": 60, "postgres": 12}
STEPS = {"sqlite": 16, "postgres": 12}
SCALE = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else 1  # tests/conftest.py
pick = st.integers(0, 10**6)


def _letters(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, r = divmod(n, 26)
        out += string.ascii_lowercase[r]
    return out


def _normal(message: str, ident) -> str:
    """An error message with the asked-for id made neutral, to compare it with another id's."""
    return re.sub(rf"\b{ident}\b", "#", message)


class Visibility(RuleBasedStateMachine):
    new_location = None  # set per backend: () -> (url or path, cleanup)
    runs = None  # per backend: examples run and invariant checks (one after each step), for the benchmark note

    def __init__(self):
        super().__init__()
        self.url, self._cleanup = type(self).new_location()
        self.tmp = Path(tempfile.mkdtemp(prefix="gz-visibility-"))
        self.admin = Store.open(self.url, encoder=ENCODER, redact=False)
        self.stores = {"local": self.admin}  # name -> open Store whose key is valid
        self.revoked: dict[str, Store] = {}  # name -> Store whose key was revoked
        self.ids = {"local": self.admin.user.id}
        self.roles = {"local": "admin"}
        self.gens: dict[int, dict] = {}  # id -> owner, visibility, markers, text, rated, kind
        self.feedback: list[dict] = []  # generation, markers, rating, label
        self.docs: list[dict] = []  # owner, visibility, markers, text, path (every version indexed)
        self.paths: list[Path] = []
        self.known = defaultdict(set)  # markers a user learnt by naming an entity (extract_entities)
        self._n = itertools.count()
        type(self).runs["examples"] += 1

    # ---- the model ---------------------------------------------------------------------------------
    def marker(self, rnd: int) -> str:
        return "zqx" + _letters(next(self._n), 2) + _letters(rnd, 5)

    def sees(self, name: str, owner: str, visibility: str) -> bool:
        return self.roles[name] == "admin" or visibility == "shared" or owner == name

    def visible_gens(self, name: str) -> set[int]:
        return {gid for gid, g in self.gens.items() if self.sees(name, g["owner"], g["visibility"])}

    def allowed(self, name: str) -> set[str]:
        ok = set(self.known[name])
        for g in self.gens.values():
            if self.sees(name, g["owner"], g["visibility"]):
                ok |= g["markers"]
        for f in self.feedback:
            g = self.gens[f["generation"]]
            if self.sees(name, g["owner"], g["visibility"]):
                ok |= f["markers"]
        for d in self.docs:
            if self.sees(name, d["owner"], d["visibility"]):
                ok |= d["markers"]
        return ok

    def all_markers(self) -> set[str]:
        out = set()
        for items in (self.gens.values(), self.feedback, self.docs):
            for it in items:
                out |= it["markers"]
        return out

    def writers(self) -> list[str]:
        return [n for n in self.stores if self.roles[n] in ("writer", "admin")]

    def any_user(self, i: int) -> str:
        names = sorted(self.stores)
        return names[i % len(names)]

    # ---- operations --------------------------------------------------------------------------------
    @precondition(lambda self: len(self.ids) <= MAX_USERS)
    @rule(role=st.sampled_from(ROLES))
    def create_user(self, role):
        name = f"user{len(self.ids)}"
        user, key = self.admin.create_user(name, role)
        self.ids[name], self.roles[name] = user.id, role
        self.stores[name] = Store.open(self.url, api_key=key, encoder=ENCODER, redact=False)

    @precondition(lambda self: len(self.ids) > 1)
    @rule(i=pick, role=st.sampled_from(ROLES))
    def change_role(self, i, role):
        name = sorted(n for n in self.ids if n != "local")[i % (len(self.ids) - 1)]
        with self.admin.backend.write():
            self.admin.backend.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
        self.roles[name] = role

    @precondition(lambda self: len(self.stores) > 1)
    @rule(i=pick)
    def revoke(self, i):
        name = sorted(n for n in self.stores if n != "local")[i % (len(self.stores) - 1)]
        assert self.admin.revoke_keys(name) >= 1
        old = self.revoked.pop(name, None)
        if old is not None:
            old.close()
        self.revoked[name] = self.stores.pop(name)

    @precondition(lambda self: self.revoked)
    @rule(i=pick)
    def new_key(self, i):
        name = sorted(self.revoked)[i % len(self.revoked)]
        self.stores[name] = Store.open(self.url, api_key=self.admin.new_key(name), encoder=ENCODER, redact=False)

    @rule(i=pick, shared=st.booleans(), how=st.sampled_from(["new", "copy", "child"]), j=pick, rnd=pick, synthetic=st.booleans())
    def record(self, i, shared, how, j, rnd, synthetic):
        name = self.any_user(i)
        s, vis = self.stores[name], "shared" if shared else "private"
        m, pm, fm = self.marker(rnd), self.marker(rnd + 1), self.marker(rnd + 2)
        text, markers, parent = f"Notes on Project {m.capitalize()} for the {COMMON}: {m} words.", {m, pm, fm}, None
        mine = sorted(self.visible_gens(name))
        if how == "copy" and mine:
            src = self.gens[mine[j % len(mine)]]
            text, markers = src["text"], {pm, fm} | set(MARKER.findall(src["text"].lower()))
        elif how == "child" and self.gens:
            parent = sorted(self.gens)[j % len(self.gens)]  # maybe one the caller may not see
        kw = dict(kind="text", text=text, prompt=f"Ask about {pm} please", family=fm, visibility=vis, synthetic=synthetic,
                  parent_id=parent)
        if self.roles[name] == "reader":
            with pytest.raises(AccessDenied):
                s.record(**kw)
            return
        if parent is not None and parent not in mine:
            with pytest.raises(GenzooError) as e:
                s.record(**kw)
            missing = max(self.gens) + 1000
            with pytest.raises(GenzooError) as e2:
                s.record(**{**kw, "parent_id": missing})
            assert _normal(str(e.value), parent) == _normal(str(e2.value), missing)
            return
        gid = s.record(**kw)
        self.gens[gid] = {"owner": name, "visibility": vis, "markers": markers, "text": text}

    @precondition(lambda self: self.gens)
    @rule(i=pick, j=pick, rating=st.none() | st.integers(0, 5), labelled=st.booleans(), rnd=pick)
    def give_feedback(self, i, j, rating, labelled, rnd):
        name = self.any_user(i)
        s, gid = self.stores[name], sorted(self.gens)[j % len(self.gens)]
        cm, lm = self.marker(rnd), self.marker(rnd + 7)
        args = dict(rating=rating, label=lm if labelled else None, comment=f"comment {cm}")
        if self.roles[name] == "reader":
            with pytest.raises(AccessDenied):
                s.feedback(gid, **args)
            return
        if gid not in self.visible_gens(name):
            with pytest.raises(GenzooError) as e:
                s.feedback(gid, **args)
            with pytest.raises(GenzooError) as e2:
                s.feedback(gid + 1000, **args)
            assert _normal(str(e.value), gid) == _normal(str(e2.value), gid + 1000)
            return
        s.feedback(gid, **args)
        self.feedback.append({"generation": gid, "markers": {cm, lm} if labelled else {cm}, "rating": rating,
                              "label": lm if labelled else None})

    @precondition(lambda self: self.gens)
    @rule(i=pick, j=pick)
    def extract(self, i, j):
        name = self.any_user(i)
        s, gid = self.stores[name], sorted(self.gens)[j % len(self.gens)]
        if gid not in self.visible_gens(name):
            with pytest.raises(GenzooError, match="not visible to you"):
                graph.extract_entities(s, gid)
            return
        if self.roles[name] == "reader":
            with pytest.raises(AccessDenied):
                graph.extract_entities(s, gid)
            return
        nodes = graph.extract_entities(s, gid)
        assert nodes  # every text names a "Project Zqx..." term
        self.known[name] |= set(MARKER.findall(self.gens[gid]["text"].lower()))

    @rule(i=pick, j=pick, new_path=st.booleans(), copy=st.booleans(), shared=st.booleans(), rnd=pick)
    def index_document(self, i, j, new_path, copy, shared, rnd):
        name = self.any_user(i)
        s, vis = self.stores[name], "shared" if shared else "private"
        if new_path or not self.paths:
            path = self.tmp / f"{self.marker(rnd)}.md"
            self.paths.append(path)
        else:
            path = self.paths[j % len(self.paths)]
        seen = [d for d in self.docs if self.sees(name, d["owner"], d["visibility"])]
        if copy and seen:
            text = seen[j % len(seen)]["text"]
        else:
            dm = self.marker(rnd + 3)
            text = f"Document about {dm} and the {COMMON}.\n"
        path.write_text(text)
        markers = set(MARKER.findall(text.lower())) | set(MARKER.findall(path.name))
        if self.roles[name] == "reader":
            with pytest.raises(AccessDenied):
                rag.index_paths(s, [path], visibility=vis)
            return
        before = [d for d in self.docs if d["owner"] == name and d["path"] == path]
        report = rag.index_paths(s, [path], visibility=vis)
        unchanged = bool(before) and before[-1]["text"] == text
        assert (report.documents, report.unchanged) == ((0, 1) if unchanged else (1, 0))
        if not unchanged:
            # a one-chunk text counts as a copy only where the caller may see a document holding it
            known_copy = any(d["text"] == text for d in seen) or any(d["text"] == text and d["owner"] == name for d in self.docs)
            restored = any(d["text"] == text for d in before)
            if not restored:
                assert report.duplicate_chunks == int(known_copy), (report, name)
            vis = before[[d["text"] for d in before].index(text)]["visibility"] if restored else vis
            self.docs.append({"owner": name, "visibility": vis, "markers": markers, "text": text, "path": path})

    @rule(i=pick, rnd=pick)
    def ask(self, i, rnd):
        """Retrieval, prompt building (what genzoo.tasks.rag.ask does before its model) and recording the answer."""
        from genzoo.tasks.rag import build_prompt

        name = self.any_user(i)
        s = self.stores[name]
        question = f"What is the {COMMON}?"
        sources = rag.retrieve(s, question, k=3)
        prompt, used = build_prompt(question, sources, len, 4000)
        self._clean(name, prompt, "ask prompt")
        am = self.marker(rnd)
        answer = f"The answer is about Project {am.capitalize()}."
        model = ModelRecord(name="rag-test-model", family="tiny")
        if self.roles[name] == "reader":
            with pytest.raises(AccessDenied):
                rag.record_answer(s, question, answer, used, manifest={"q": question}, model=model)
            return
        gid = rag.record_answer(s, question, answer, used, manifest={"q": question}, model=model)
        self.gens[gid] = {"owner": name, "visibility": "private", "markers": {am}, "text": answer}

    # ---- the checks --------------------------------------------------------------------------------
    def _clean(self, name: str, value, where: str) -> None:
        blob = (value if isinstance(value, str) else repr(value)).lower()
        leaked = set(MARKER.findall(blob)) - self.allowed(name)
        assert not leaked, f"{where} shows {name} ({self.roles[name]}) markers of records it may not see: {sorted(leaked)}"

    @invariant()
    def revoked_keys_read_nothing(self):
        for name, s in self.revoked.items():
            if name in self.stores:
                continue
            for call in (lambda: s.get(1), lambda: s.search(COMMON), lambda: rag.retrieve(s, COMMON),
                         lambda: stats.usage(s), lambda: s.duplicates()):
                with pytest.raises(AccessDenied, match="revoked"):
                    call()

    @invariant()
    def no_read_reveals_what_the_caller_may_not_see(self):
        type(self).runs["checks"] += 1
        forbidden_all = self.all_markers()
        for name, s in sorted(self.stores.items()):
            self._check_reader(name, s, forbidden_all - self.allowed(name))

    def _check_reader(self, name: str, s: Store, forbidden: set[str]) -> None:
        visible = self.visible_gens(name)
        missing = max(self.gens, default=0) + 1000
        # get and feedback_for: a record the caller may not see answers like one that does not exist
        with pytest.raises(GenzooError) as e:
            s.get(missing)
        gone = _normal(str(e.value), missing)
        for gid in self.gens:
            if gid in visible:
                self._clean(name, s.get(gid), "get")
                self._clean(name, s.feedback_for(gid), "feedback_for")
            else:
                for call in (s.get, s.feedback_for):
                    with pytest.raises(GenzooError) as e:
                        call(gid)
                    assert _normal(str(e.value), gid) == gone
        if self.gens and (hidden := sorted(set(self.gens) - visible)):
            from genzoo.tasks.record import reproduce_generation

            with pytest.raises(GenzooError) as e:
                reproduce_generation(s, hidden[0])
            assert _normal(str(e.value), hidden[0]) == gone
        # search in every mode, similar: only visible ids; a hidden record's marker finds nothing
        probe = sorted(forbidden)[:1]
        own = sorted(m for gid in visible for m in self.gens[gid]["markers"])[:1]
        latest = s.search("", k=1000)
        assert sorted(h.generation.id for h in latest) == sorted(visible)  # counts: only what the caller sees
        self._clean(name, latest, "search('')")
        for query in [COMMON, *probe, *own]:
            for mode in ("keyword", "vector", "hybrid"):
                hits = s.search(query, mode=mode, k=50)
                assert {h.generation.id for h in hits} <= visible, (mode, query)
                self._clean(name, hits, f"search {mode}")
                if mode == "keyword" and query in probe:
                    assert hits == []
        for fm in probe:  # a hidden record's family filters to nothing, like a family nobody uses
            assert s.search(COMMON, mode="hybrid", family=fm) == []
        hits = s.similar(ENCODER.encode([f"Notes on Project {probe[0] if probe else 'x'} {COMMON}"])[0], space=ENCODER.space, k=100)
        assert {h.generation.id for h in hits} <= visible
        self._clean(name, hits, "similar")
        # stats: counts of visible generations and feedback only
        rows = stats.usage(s, by="week")
        self._clean(name, rows, "stats")
        assert sum(r.generations for r in rows) == len(visible)
        seen_fb = [f for f in self.feedback if f["generation"] in visible]
        assert sum(r.ratings for r in rows) == sum(f["rating"] is not None for f in seen_fb)
        assert sum(sum(r.labels.values()) for r in rows) == sum(f["label"] is not None for f in seen_fb)
        # duplicates: only visible records take part
        report = s.duplicates("text")
        self._clean(name, report, "duplicates")
        assert report["generations"] == len(visible)
        ids = {c["kept"] for c in report["clusters"]} | {d["id"] for c in report["clusters"] for d in c["duplicates"]}
        assert ids <= visible
        # export: the rated records the caller sees, nothing else
        rated = {f["generation"] for f in seen_fb if f["rating"] is not None}
        out = self.tmp / f"export-{name}.jsonl"
        if rated:
            rep = export(s, out, rated_min=0, include_synthetic=True)
            lines = [json.loads(x) for x in out.read_text().splitlines()]
            assert rep.written == len(rated) and {r["id"] for r in lines} == rated
            self._clean(name, out.read_text(), "export")
        else:
            with pytest.raises(GenzooError, match="no text records match"):
                export(s, out, rated_min=0, include_synthetic=True)
        hidden_labels = sorted(f["label"] for f in self.feedback if f["label"] and f["generation"] not in visible)
        if hidden_labels:
            with pytest.raises(GenzooError) as e:
                export(s, out, label=hidden_labels[0], include_synthetic=True)
            with pytest.raises(GenzooError) as e2:
                export(s, out, label="zqxnolabel", include_synthetic=True)
            assert str(e.value) == str(e2.value)
        # RAG retrieval in every mode
        doc_probe = sorted(m for d in self.docs if not self.sees(name, d["owner"], d["visibility"]) for m in d["markers"]
                           if m in forbidden)[:1]
        for query in [COMMON, *doc_probe]:
            for mode in ("keyword", "vector", "hybrid"):
                found = rag.retrieve(s, query, k=20, mode=mode)
                self._clean(name, found, f"retrieve {mode}")
                if mode == "keyword" and query in doc_probe:
                    assert found == []
        self._check_graph(name, s, visible)

    def _check_graph(self, name: str, s: Store, visible: set[int]) -> None:
        b = self.admin.backend
        docs = {r["id"]: r for r in b.rows("SELECT id, owner_id, visibility FROM documents")}
        uid = self.ids[name]
        admin = self.roles[name] == "admin"
        doc_ok = {d for d, r in docs.items() if admin or r["visibility"] == "shared" or r["owner_id"] == uid}
        nodes = {("generation", g): g in visible for g in self.gens}
        for r in b.rows("SELECT g.id AS gid, g.prompt_id AS pid FROM generations g WHERE g.prompt_id IS NOT NULL"):
            nodes[("prompt", r["pid"])] = r["gid"] in visible or nodes.get(("prompt", r["pid"]), False)
        nodes.update({("document", d): d in doc_ok for d in docs})
        nodes.update({("chunk", r["id"]): r["document_id"] in doc_ok for r in b.rows("SELECT id, document_id FROM chunks")})
        mentions = defaultdict(set)
        for r in b.rows("SELECT src_type, src_id, dst_id, owner_id FROM relations WHERE dst_type = 'entity'"):
            mentions[r["dst_id"]].add((r["src_type"], r["src_id"], r["owner_id"]))
        for r in b.rows("SELECT id FROM entities"):
            nodes[("entity", r["id"])] = admin or r["id"] in s._named_entities or any(
                owner == uid or (t == "generation" and i in visible) for t, i, owner in mentions[r["id"]])
        for kind in ("generation", "prompt", "document", "chunk", "entity"):
            top = max([i for k, i in nodes if k == kind], default=0) + 1000
            with pytest.raises(GenzooError) as e:
                graph.label(s, (kind, top))
            gone = _normal(str(e.value), top)
            for (k, ident), ok in sorted(nodes.items()):
                if k != kind:
                    continue
                assert graph.visible(s, (k, ident)) == ok, (name, k, ident)
                if not ok:
                    for read in (graph.label, graph.edges):
                        with pytest.raises(GenzooError) as e:
                            read(s, (k, ident))
                        assert _normal(str(e.value), ident) == gone
                    continue
                self._clean(name, graph.label(s, (k, ident), width=400), f"label {k}")
                for edge in graph.edges(s, (k, ident)):
                    other = edge.dst if edge.src == (k, ident) else edge.src
                    assert nodes.get(other, other[0] == "model"), (name, edge)
                for n, _ in graph.lineage(s, (k, ident)) + graph.descendants(s, (k, ident)):
                    assert nodes.get(n, n[0] == "model"), (name, n)

    def teardown(self):
        for s in [*self.stores.values(), *self.revoked.values()]:
            s.close()
        self._cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    if request.param == "sqlite":
        def new_location():
            folder = tempfile.mkdtemp(prefix="gz-visibility-db-")
            return Path(folder) / "store.db", lambda: shutil.rmtree(folder, ignore_errors=True)
    else:
        cluster = request.getfixturevalue("pg_cluster")

        def new_location():
            url = cluster.new_database()
            return url, lambda: cluster.drop(url)
    return request.param, new_location


def test_no_read_path_reveals_what_the_caller_may_not_see(backend):
    kind, new_location = backend
    machine = type(f"Visibility_{kind}", (Visibility,), {"new_location": staticmethod(new_location),
                                                         "runs": {"examples": 0, "checks": 0}})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=EXAMPLES[kind] * SCALE, stateful_step_count=STEPS[kind], deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]))


# ---- regressions the machine found ----------------------------------------------------------------

from test_store import db  # noqa: E402,F401  (a SQLite file or a PostgreSQL database, per test)


def test_a_private_file_name_is_not_findable_through_a_shared_copy_of_its_text(db, tmp_path):
    """The chunk index holds the first copy's uri: a keyword on another user's private file name must
    not find the chunk through a shared copy of its text (found by the state machine above)."""
    with Store.open(db, encoder=ENCODER, redact=False) as admin:
        _, alice_key = admin.create_user("alice", "writer")
        _, bob_key = admin.create_user("bob", "reader")
    with Store.open(db, api_key=alice_key, encoder=ENCODER) as alice, Store.open(db, api_key=bob_key, encoder=ENCODER) as bob:
        text = f"Document about the {COMMON}.\n"
        rag.index_text(alice, "notes on zqxsecretnm", text)  # a uri of plain words: both full-text engines split it
        rag.index_text(alice, "public", text, visibility="shared")
        assert rag.retrieve(alice, "zqxsecretnm", mode="keyword") != []  # her own file name finds it
        assert rag.retrieve(bob, "zqxsecretnm", mode="keyword") == []
        assert [s.uri for s in rag.retrieve(bob, "zqxsecretnm launch", mode="keyword")] == ["public"]
