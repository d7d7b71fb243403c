"""`genzoo store user|key|policy|check`: users and API keys, the store's protection settings, and
its integrity, from the command line. Each opens the store as the caller ($GENZOO_API_KEY, or the
local admin without one) and calls ``genzoo.store.api.Store``, which decides who may do what and
audits every change; a refusal is one line and exit status 2. `check` exits 0 when the store is
consistent and 1 when it is not (2 stays for errors)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from genzoo.cli.app import GenzooTyper, StoreOption, note, say
from genzoo.cli.store_data import open_store

user_app = GenzooTyper(help="Users of the store: add (with their first API key), list. Admin only.")
key_app = GenzooTyper(help="API keys: new (for an existing user), revoke (all of a user's keys), list. Admin only.")


def _check_name(name: str) -> None:
    from genzoo.core.errors import GenzooError
    from genzoo.store.search import check_text

    check_text(name, "the user name")
    if "\x00" in name:
        raise GenzooError("a user name must not hold a NUL character")


def _when(t) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(t)))


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def _key_note(name: str, key: str) -> str:
    return (f"API key for {name}: {key}\n"
            "note: this key is shown only once (the store keeps only its sha256); hand it over now, "
            "e.g. as GENZOO_API_KEY. A lost key cannot be recovered: issue another with `genzoo store key new`.")


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="the new user's name"),
    role: str = typer.Option(..., "--role", help="reader (read, search), writer (also record, feedback) or admin (also users, keys, audit)"),
    store: StoreOption = None,
) -> None:
    """Add a user and print their first API key (once)."""
    _check_name(name)
    with open_store(store) as s:
        user, key = s.create_user(name, role)
    say(f"added user {user.name!r} with role {user.role}")
    say(_key_note(user.name, key))


@user_app.command("list")
def user_list(store: StoreOption = None) -> None:
    """The store's users, their roles and when they were made."""
    with open_store(store) as s:
        users = s.users()
    say(_table(["user", "role", "created"], [[u["name"], u["role"], _when(u["created_at"])] for u in users]))


@key_app.command("new")
def key_new(user: str = typer.Argument(..., help="an existing user's name"), store: StoreOption = None) -> None:
    """Issue another API key for an existing user (their other keys keep working) and print it once."""
    _check_name(user)
    with open_store(store) as s:
        key = s.new_key(user)
    say(f"new key for {user!r}")
    say(_key_note(user, key))


@key_app.command("revoke")
def key_revoke(user: str = typer.Argument(..., help="the user whose keys to revoke (all of them)"), store: StoreOption = None) -> None:
    """Revoke every active API key of a user: the next command with any of them is refused."""
    _check_name(user)
    with open_store(store) as s:
        n = s.revoke_keys(user)
    say(f"revoked {n} key(s) of {user!r}" + ("" if n else " (they had no active key)"))


@key_app.command("list")
def key_list(store: StoreOption = None) -> None:
    """Users, roles, how many active keys each has and when the last was made (never a key or its hash)."""
    with open_store(store) as s:
        users = s.users()
    rows = [[u["name"], u["role"], str(u["active_keys"]), str(u["keys"] - u["active_keys"]), _when(u["last_key_at"]), _when(u["created_at"])]
            for u in users]
    say(_table(["user", "role", "active keys", "revoked", "last key made", "user created"], rows))


def policy_cmd(
    seal: Optional[str] = typer.Option(None, "--seal", help="set the fields new records seal (admin), comma-separated: "
                                       "prompt, text, session_id, label, comment, quality; 'none' seals nothing"),
    store: StoreOption = None,
) -> None:
    """The store's protection settings (read-only without --seal): backend, schema version, redaction,
    the encryption policy recorded in the store, and what is stored encrypted. With --seal, change
    the policy (admin; audited): every later writer, Python or CLI, follows it."""
    with open_store(store) as s:
        if seal is not None:
            s.set_policy([] if seal.strip().lower() == "none" else seal)
        p = s.policy()
        b = s.backend
        totals = {"generations.text": b.count("generations"), "prompts.text": b.count("prompts"), "generations.manifest": b.count("generations"),
                  "generations.quality": b.count("generations"), "generations.session_id": b.count("generations"),
                  "prompts.session_id": b.count("prompts"), "feedback.label": b.count("feedback"), "feedback.comment": b.count("feedback")}
    enc = p["encrypted"]
    sealed = ", ".join(p["sensitive"]) or "none"
    lines = [f"store: {p['url']}", f"backend: {p['backend']}", f"schema version: {p['schema_version']}",
             f"redaction of PII on write: {'on' if p['redaction'] else 'off (the redaction engine is not installed)'}",
             f"encryption policy (kept in the store, followed by every writer): seal {sealed}"
             + (f" under key {p['key_id']}" if p["sensitive"] else ""),
             f"encryption key in the environment: {'yes' if p['key_configured'] else 'no'}"]
    if p["rotating_to"]:
        lines.append(f"key rotation to {p['rotating_to']} was interrupted: run `genzoo store rotate-key --key-file FILE` again")
    if p["key_problem"]:
        lines.append(f"key problem: {p['key_problem']}")
    lines.append("stored encrypted:")
    lines += [f"  {field}: {enc[field]} of {totals[field]}" for field in enc]
    if not any(enc.values()):
        lines.append("  (nothing: every stored field is in clear; `genzoo store policy --seal prompt,text` seals new records)")
    say("\n".join(lines))


def rotate_key_cmd(
    key_file: Path = typer.Option(..., "--key-file", help="the key file to write the new key into (mode 0600): the "
                                  "current key file, or a new path; the old key stays below the new one"),
    batch: int = typer.Option(500, "--batch", min=1, help="values re-encrypted per transaction"),
    store: StoreOption = None,
) -> None:
    """Re-encrypt every sealed value under a new key, in place (admin). Crash-safe: the new key is
    written to --key-file first, then values move batch by batch; after a crash, run it again with
    the same --key-file and it resumes."""
    with open_store(store) as s:
        r = s.rotate_key(key_file, batch=batch, progress=lambda field, n: note(f"  {field}: {n} re-encrypted"))
    say(f"{'resumed and finished' if r.resumed else 'rotated'}: {r.total} values re-encrypted, key {r.old_key_id} -> {r.new_key_id}\n"
        f"the new key is the first line of {r.key_file} (the old key is kept below it, for older backups);\n"
        f"from now on: export GENZOO_STORE_KEY_FILE={r.key_file} (and unset GENZOO_STORE_KEY)")


def check_cmd(
    space: Optional[str] = typer.Option(None, "--space", help="the vector space to count unembedded text records in (default: the default text encoder's, minilm-l6-v2)"),
    store: StoreOption = None,
) -> None:
    """Check the store's integrity: the database's own check, and that the full-text index, the
    vectors and the records agree. Exit 0 when consistent, 1 when not."""
    if space is None:
        from genzoo.tasks.encoders import MiniLMEncoder  # its name only: no model is loaded

        space = MiniLMEncoder.space
    with open_store(store) as s:
        r = s.check(space)
        url = s.backend.url
    counts = r["counts"]
    lines = [f"store: {url}", f"database integrity: {r['integrity']}"]
    lines += [f"{what}: {n}" for what, n in counts.items() if what != "unembedded" and not what.startswith("vectors:")]
    lines += [f"vectors in {what.split(':', 1)[1]}: {n}" for what, n in counts.items() if what.startswith("vectors:")]
    if "unembedded" in counts:
        lines.append(f"text records without a vector in {space}: {counts['unembedded']} (not an error: the next vector search embeds them)")
    lines.append("consistent" if r["consistent"] else "NOT consistent: " + "; ".join(r["problems"]))
    say("\n".join(lines))
    if not r["consistent"]:
        raise typer.Exit(1)


def register(store_app: GenzooTyper) -> None:
    store_app.add_typer(user_app, name="user")
    store_app.add_typer(key_app, name="key")
    store_app.command("policy")(policy_cmd)
    store_app.command("check")(check_cmd)
    store_app.command("rotate-key")(rotate_key_cmd)
