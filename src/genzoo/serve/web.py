"""The web app: server-rendered pages over the store, the served models and their run folders.

Pages: ``/`` and ``/gallery`` (stored generations: search, filters, paging), ``/generations/{id}``
(one record, its feedback, a rating form), ``/playground`` (generate with the text streaming in),
``/runs`` and ``/runs/{name}`` (loss curves, samples, eval beside its floors, the manifest),
``/stats`` (usage per day or week, the bench report), ``/login`` and ``/logout``.

Identity. The API takes ``Authorization: Bearer gz_...``; a browser cannot attach that to a link
or a form, so the web app keeps the key the user signs in with in a cookie (HttpOnly: no script
reads it; SameSite=Strict: no other site's page sends it; Secure over HTTPS). Without that cookie
a page acts as the server's anonymous caller (``ServeSettings.anonymous``: the ``anonymous``
reader, the local admin with ``--open``, or nobody: sign in first). Every read and write opens
``genzoo.store.api.Store`` with that key, so roles and ownership are the store's, not the pages'.

CSRF. Every page sets a random token in a cookie (HttpOnly, SameSite=Strict) and repeats it in
each form's hidden ``csrf_token`` field (and a ``<meta>`` for the playground's fetch, sent as
``X-CSRF-Token``); a POST whose token does not match its cookie is refused (403) before anything
runs. SameSite=Strict alone already keeps other sites' forms from carrying the key; the token also
covers browsers without SameSite and a sibling subdomain that can set cookies... but not read ours.

The playground streams from ``POST /playground/stream`` (server-sent events read with fetch and a
ReadableStream): the API's own pieces (the pool's gate, ``textgen.generate``, guardrails, recording,
the rate limit) run as the cookie's caller, so the key never reaches script; its last event carries
the guardrail verdict and the stored generation's id, which the playground's rating form posts to.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import contextmanager
import math
import secrets
from pathlib import Path
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from genzoo.core.errors import GenzooError
from genzoo.serve import web_views as V

HERE = Path(__file__).parent
KEY_COOKIE = "genzoo_key"
CSRF_COOKIE = "genzoo_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PER_PAGE = 12
MAX_PAGE = 1000 // PER_PAGE  # the store returns at most 1000 hits per search
RATINGS = (1, 2, 3, 4, 5)
MAX_PROMPT_CHARS = 20_000
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))


class SignInNeeded(Exception):
    """No key in the cookie and the server lets no anonymous caller in."""


class BadKey(Exception):
    """The cookie's key is no longer accepted (revoked, or the store changed)."""


# ---- identity ------------------------------------------------------------------------------------
def _settings(request: Request):
    return request.app.state.settings


def caller(request: Request):
    """The server core's ``Caller`` for this page: the cookie's key, else whoever the core lets in
    without one (``Authenticator.caller``: the anonymous reader, the local admin, or nobody)."""
    import hashlib

    from genzoo.serve.errors import ApiError
    from genzoo.serve.security import Caller
    from genzoo.store.api import AccessDenied

    if "caller" in request.state._state:
        return request.state.caller
    key = request.cookies.get(KEY_COOKIE)
    if key:
        try:
            with request.app.state.open_store(key) as store:
                user = store.user
        except AccessDenied as e:
            raise BadKey(str(e)) from None
        who = Caller(user.name, user.role, key, "key:" + hashlib.sha256(key.encode()).hexdigest())
    else:
        try:
            who = request.app.state.auth.caller(request)
        except ApiError:
            raise SignInNeeded() from None
    request.state.caller = who
    return who


@contextmanager
def open_store(request: Request):
    """The store as this page's caller, opened as the API opens it (``deps.store_as``)."""
    from genzoo.serve.deps import store_as

    with store_as(request, caller(request)) as store:
        yield store


def _whoami(request: Request) -> dict:
    """{"name", "role", "signed_in"} for the header; never raises (a page says what went wrong)."""
    if "who" in request.state._state:
        return request.state.who
    signed_in = bool(request.cookies.get(KEY_COOKIE))
    who = {"name": None, "role": None, "signed_in": signed_in}
    try:
        c = caller(request)
        who.update(name=c.name, role=c.role)
    except Exception:  # noqa: BLE001  (shown on the page as "not signed in" or the page's own error)
        pass
    request.state.who = who
    return who


# ---- CSRF ----------------------------------------------------------------------------------------
def _csrf(request: Request) -> str:
    token = getattr(request.state, "csrf", None)
    if token is None:
        token = request.cookies.get(CSRF_COOKIE, "")
        if len(token) != 43 or not token.replace("-", "").replace("_", "").isalnum():
            token = secrets.token_urlsafe(32)
        request.state.csrf = token
    return token


def _csrf_ok(request: Request, given: str | None) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE)
    return bool(cookie and given and secrets.compare_digest(cookie.encode(), str(given).encode()))


def _cookie(response: Response, request: Request, name: str, value: str, **kw) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/", **kw)


# ---- rendering -----------------------------------------------------------------------------------
def render(request: Request, template: str, status: int = 200, **context) -> HTMLResponse:
    token = _csrf(request)
    context.setdefault("error", None)
    context.setdefault("notice", None)
    context.update(csrf_token=token, who=_whoami(request), path=request.url.path,
                   here=request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    response = templates.TemplateResponse(request, template, context, status_code=status)
    if request.cookies.get(CSRF_COOKIE) != token:
        _cookie(response, request, CSRF_COOKIE, token)
    response.headers["content-security-policy"] = PAGE_CSP
    response.headers["cache-control"] = "no-store"
    return response


def _refused(request: Request, message: str, status: int) -> HTMLResponse:
    return render(request, "error.html", status=status, title="Refused", error=message)


def _local(target: str | None, default: str) -> str:
    """A same-site path to go back to (never another site: no scheme, no '//', no backslash)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or any(c in target for c in "\r\n"):
        return default
    return target


def _sign_in_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": here}), status_code=303)


def _store_page(request: Request, template: str, work, **context):
    """Run ``work(store)`` (returns template context) as this caller; a refusal becomes the page's error in words."""
    from genzoo.store.api import AccessDenied

    try:
        return render(request, template, **{**context, **work()})
    except SignInNeeded:
        return _sign_in_redirect(request)
    except BadKey as e:
        return render(request, "login.html", status=401, title="Sign in", next=request.url.path,
                      error=f"The API key you signed in with is no longer accepted: {e} Sign in again.")
    except AccessDenied as e:
        return render(request, template, status=403, **{**context, "error": str(e)})
    except GenzooError as e:
        return render(request, template, status=400, **{**context, "error": str(e)})


# ---- sign in / out -------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/"):
    return render(request, "login.html", title="Sign in", next=_local(next, "/"))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request):
    from genzoo.store.api import AccessDenied

    form = await request.form()
    if not _csrf_ok(request, form.get(CSRF_FIELD)):
        return _csrf_refused(request)
    key = str(form.get("api_key") or "").strip()
    target = _local(str(form.get("next") or ""), "/")
    if not key:
        return render(request, "login.html", status=400, title="Sign in", next=target, error="Enter an API key (it starts with gz_).")
    try:
        def check():
            with request.app.state.open_store(key) as store:
                return store.user

        await asyncio.to_thread(check)
    except (AccessDenied, GenzooError) as e:
        return render(request, "login.html", status=401, title="Sign in", next=target, error=f"That key was not accepted: {e}")
    response = RedirectResponse(target, status_code=303)
    _cookie(response, request, KEY_COOKIE, key)
    _cookie(response, request, CSRF_COOKIE, secrets.token_urlsafe(32))  # a new session, a new token
    return response


@router.post("/logout")
async def logout(request: Request):
    form = await request.form()
    if not _csrf_ok(request, form.get(CSRF_FIELD)):
        return _csrf_refused(request)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(KEY_COOKIE, path="/", samesite="strict", httponly=True)
    return response


def _csrf_refused(request: Request) -> HTMLResponse:
    return _refused(request, "This form has expired or did not come from this site (its security token does not match). "
                             "Reload the page and send it again.", 403)


# ---- gallery -------------------------------------------------------------------------------------
def _gallery_query(params) -> tuple[dict, dict, list[str]]:
    """(form values as typed, store.search arguments, problems in words)."""
    from genzoo.store.records import KINDS
    from genzoo.store.search import MODES

    form = {k: str(params.get(k, "") or "").strip() for k in ("q", "mode", "family", "kind", "min_rating", "page")}
    form["mode"] = form["mode"] or "hybrid"
    problems, args = [], {}
    if form["mode"] not in MODES:
        problems.append(f"Search mode must be one of {', '.join(MODES)}.")
        form["mode"] = "hybrid"
    if form["kind"] and form["kind"] not in KINDS:
        problems.append(f"Kind must be one of {', '.join(KINDS)}.")
        form["kind"] = ""
    if form["kind"]:
        args["kind"] = form["kind"]
    if form["family"]:
        args["family"] = form["family"]
    if form["min_rating"]:
        try:
            rating = float(form["min_rating"])
            if not math.isfinite(rating):
                raise ValueError
            args["min_rating"] = rating
        except ValueError:
            problems.append(f"Minimum rating must be a number, such as 3 or 4.5 (got {form['min_rating'][:40]!r}).")
    page = 1
    if form["page"]:
        try:
            page = int(form["page"])
            if not 1 <= page <= MAX_PAGE:
                raise ValueError
        except ValueError:
            problems.append(f"Page must be a whole number from 1 to {MAX_PAGE}.")
            page = 1
    form["page"] = page
    return form, args, problems


@router.get("/", response_class=HTMLResponse)
@router.get("/gallery", response_class=HTMLResponse)
def gallery(request: Request):
    form, filters, problems = _gallery_query(request.query_params)
    page = form["page"]

    def work():
        if problems:
            raise GenzooError(" ".join(problems))
        with open_store(request) as store:
            hits = store.search(form["q"], mode=form["mode"], k=PER_PAGE * page + 1, **filters)
        shown = hits[PER_PAGE * (page - 1):PER_PAGE * page]
        return {"hits": [_card(h.generation, h.score if form["q"] else None) for h in shown], "has_next": len(hits) > PER_PAGE * page}

    def link(p: int) -> str:
        return "/gallery?" + urlencode({**{k: v for k, v in form.items() if v and k != "page"}, "page": p})

    return _store_page(request, "gallery.html", work, title="Gallery", form=form, kinds=_kinds(), modes=_modes(),
                       prev_link=link(page - 1) if page > 1 else None, next_link=link(page + 1), hits=[], has_next=False)


def _kinds():
    from genzoo.store.records import KINDS

    return KINDS


def _modes():
    from genzoo.store.search import MODES

    return MODES


def _card(g, score=None) -> dict:
    media = V.media_kind(g.content_type) if g.content is not None else None
    text = g.text
    if text is None and g.content is not None and media is None:
        text = f"({len(g.content):,} bytes of {g.content_type or 'binary data'})"
    return {"id": g.id, "kind": g.kind, "family": g.family, "model": g.model_name, "owner": g.owner, "visibility": g.visibility,
            "prompt": g.prompt, "text": text, "media": media, "content_type": g.content_type, "rating": g.rating,
            "created": _when(g.created_at), "score": score, "seed": g.seed}


def _when(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@router.get("/generations/{gid}/content")
def content(request: Request, gid: int):
    """A stored image or sound, as the caller may see it; anything else (HTML, SVG ...) is never served."""
    from genzoo.store.api import AccessDenied

    try:
        with open_store(request) as store:
            g = store.get(gid)
    except (SignInNeeded, BadKey, AccessDenied, GenzooError):
        return Response("not found", status_code=404, media_type="text/plain")
    if g.content is None or V.media_kind(g.content_type) is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(g.content, media_type=g.content_type.split(";")[0].strip().lower(),
                    headers={"cache-control": "private, max-age=300", "content-security-policy": "sandbox; default-src 'none'",
                             "x-content-type-options": "nosniff"})


@router.get("/generations/{gid}", response_class=HTMLResponse)
def generation(request: Request, gid: int, rated: str | None = None):
    def work():
        with open_store(request) as store:
            g = store.get(gid)
            feedback = store.feedback_for(gid)
        return {"g": _card(g), "manifest": json.dumps(g.manifest, indent=2, ensure_ascii=False)[:V.MAX_MANIFEST_CHARS],
                "feedback": [{"user": f.user, "rating": f.rating, "label": f.label, "comment": f.comment, "when": _when(f.created_at)}
                             for f in feedback]}

    notice = "Thank you: your rating is saved." if rated else None
    return _store_page(request, "generation.html", work, title=f"Generation {gid}", gid=gid, g=None, manifest="", feedback=[],
                       ratings=RATINGS, notice=notice)


@router.post("/generations/{gid}/feedback", response_class=HTMLResponse)
async def feedback(request: Request, gid: int):
    from genzoo.store.api import AccessDenied

    form = await request.form()
    if not _csrf_ok(request, form.get(CSRF_FIELD)):
        return _csrf_refused(request)
    back = _local(str(form.get("next") or ""), f"/generations/{gid}")
    try:
        rating = float(str(form.get("rating") or ""))
        if rating not in RATINGS:
            raise ValueError
    except ValueError:
        return _refused(request, f"Choose a rating from {RATINGS[0]} to {RATINGS[-1]}.", 400)

    def give():
        with open_store(request) as store:
            store.feedback(gid, rating=rating)

    try:
        await asyncio.to_thread(give)
    except SignInNeeded:
        return _sign_in_redirect(request)
    except (AccessDenied, BadKey) as e:
        return _refused(request, f"Your rating was not saved: {e}", 403)
    except GenzooError as e:
        return _refused(request, f"Your rating was not saved: {e}", 400)
    sep = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{sep}rated=1" if back.startswith("/generations/") else back, status_code=303)


# ---- playground ----------------------------------------------------------------------------------
def _served(request: Request) -> list[dict]:
    pool = getattr(request.app.state, "pool", None)
    models = getattr(pool, "models", None)
    if isinstance(models, dict):
        return [{"name": n, "kind": getattr(s, "kind", "text")} for n, s in sorted(models.items())]
    return [{"name": Path(p).name, "kind": "text"} for p in _settings(request).runs]


@router.get("/playground", response_class=HTMLResponse)
def playground(request: Request):
    models = [m for m in _served(request) if m["kind"] == "text"]
    other = [m["name"] for m in _served(request) if m["kind"] != "text"]
    error = None if models else "No text model is served: start the server with a text run, e.g. genzoo serve runs/gpt-mytext."
    return render(request, "playground.html", title="Playground", models=models, other=other, error=error)


@router.post("/playground/stream")
async def playground_stream(request: Request):
    """The playground's generation as server-sent events: ``{"text": piece}`` as tokens arrive, then
    ``{"done": true, "finish_reason", "guardrails", "generation_id", "note"}`` (or ``{"error": {...}}``).
    The same pieces as ``/v1/completions`` (pool, gate, guardrails, recording) with the cookie's key;
    the final event carries what the OpenAI stream has no field for: the verdict and the record's id."""
    from genzoo.serve import guard
    from genzoo.serve.errors import ApiError
    from genzoo.serve.textgen import TextJob

    if not _csrf_ok(request, request.headers.get(CSRF_HEADER)):
        return _json_error(403, "This page's security token does not match: reload the page and try again.")
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError
    except ValueError:
        return _json_error(400, "The playground sends a JSON object; reload the page.")
    state = request.app.state
    pool = getattr(state, "pool", None)
    if pool is None:
        return _json_error(503, "This server has no models loaded.")
    try:
        options = _generation_options(body)
        who = await asyncio.to_thread(caller, request)
        state.limiter.hit(who.limit_key)
        served = pool.get(options.pop("model"), "text")
        chat = options.pop("chat")
        job = TextJob(**options, stop=["\nuser:"] if chat else [])
    except SignInNeeded:
        return _json_error(401, "This server needs you to sign in before generating (Sign in, top right).")
    except BadKey as e:
        return _json_error(401, f"The API key you signed in with is no longer accepted: {e} Sign in again.")
    except ApiError as e:
        return _json_error(e.status, e.message, e.headers)
    except (ValueError, GenzooError) as e:
        return _json_error(400, str(e))
    try:
        ticket = pool.gate.admit()
    except ApiError as e:
        return _json_error(e.status, e.message, e.headers)
    policy = getattr(state, "guardrails", None)
    return StreamingResponse(_events(request, who, pool, served, job, ticket, policy, guard), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


def _generation_options(body: dict) -> dict:
    model, prompt = body.get("model"), body.get("prompt")
    if not isinstance(model, str) or not model:
        raise ValueError("Choose a model.")
    if not isinstance(prompt, str):
        raise ValueError("Write a prompt.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"The prompt is {len(prompt):,} characters long; at most {MAX_PROMPT_CHARS:,} are accepted.")
    chat = body.get("mode") == "chat"
    if chat:
        from genzoo.serve.textgen import render_chat

        prompt = render_chat([{"role": "user", "content": prompt}])
    out: dict = {"model": model, "prompt": prompt, "chat": chat}
    for name, label, cast, low, high in (("max_tokens", "Max tokens", int, 1, 4096), ("temperature", "Temperature", float, 0.0, 2.0),
                                         ("top_p", "Top-p", float, 0.0, 1.0), ("seed", "Seed", int, 0, 2**63 - 1)):
        value = body.get(name)
        if value in (None, ""):
            continue
        try:
            v = cast(value)
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{label} must be a {'whole ' if cast is int else ''}number, got {str(value)[:40]!r}.") from None
        if not low <= v <= high or (name == "top_p" and v == 0):
            raise ValueError(f"{label} must be {'above' if name == 'top_p' else 'at least'} {low} and at most {high}, got {v}.")
        out[name] = v
    return out


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


async def _events(request: Request, who, pool, served, job, ticket, policy, guard):
    from genzoo.serve.recording import record_texts
    from genzoo.serve.textgen import relay

    async for row, item in relay(request, pool, served, job, ticket, stream_pieces=policy is None):
        if row is not None:
            yield _sse({"text": item})
            continue
        if isinstance(item, Exception):
            yield _sse({"error": {"message": f"The generation stopped: {item}"}})
            return
        result = item[0]
        text, override, verdict = guard.apply(policy, result.text, job.prompt)
        if policy is not None and text:
            yield _sse({"text": text})
        output = {"text": text, "finish_reason": override or result.finish_reason, "guardrails": verdict, "filled": result.filled}
        try:
            ids = await record_texts(request, who, served, job, [output])
        except GenzooError as e:
            ids, note = [], f"The text was not recorded: {e}"
        else:
            note = None if ids else ("Not recorded: sign in with a writer key to keep and rate generations."
                                     if not who.can_write else "Not recorded: this server does not record generations.")
        yield _sse({"done": True, "finish_reason": output["finish_reason"], "guardrails": verdict, "tokens": result.tokens,
                    "generation_id": ids[0] if ids else None, "note": note})


def _json_error(status: int, message: str, headers: dict | None = None) -> Response:
    from genzoo.serve.errors import error_response

    return error_response(status, message, "web_request", headers)


# ---- runs ----------------------------------------------------------------------------------------
def _runs(request: Request) -> dict[str, Path]:
    out: dict[str, Path] = {}
    pool = getattr(request.app.state, "pool", None)
    models = getattr(pool, "models", None)
    if isinstance(models, dict):
        for name, served in models.items():
            path = Path(getattr(served, "path", ""))
            if path.name in ("best", "checkpoint") or not (path / "run.json").exists():
                root = path.parent if (path.parent / "run.json").exists() else path
            else:
                root = path
            out[name] = root
    for p in _settings(request).runs:
        p = Path(p).expanduser().resolve()
        root = p.parent if p.name in ("best", "checkpoint") and (p.parent / "run.json").exists() else p
        out.setdefault(root.name, root)
    return out


@router.get("/runs", response_class=HTMLResponse)
def runs_index(request: Request):
    runs = [{"name": n, "has_eval": (p / "eval.json").is_file()} for n, p in sorted(_runs(request).items())]
    return render(request, "runs.html", title="Runs", runs=runs)


@router.get("/runs/{name}", response_class=HTMLResponse)
def run_page(request: Request, name: str):
    path = _runs(request).get(name)
    if path is None:
        return render(request, "error.html", status=404, title="No such run",
                      error=f"No served run is named {name!r}; see the list of runs.")
    page = V.read_run(name, path)
    chart = V.line_chart(page.curves, title=f"loss curves of {name}") if page.curves else ""
    return render(request, "run.html", title=f"Run {name}", run=page, chart=Markup(chart), quote=quote)


@router.get("/runs/{name}/files/{rel:path}")
def run_file(request: Request, name: str, rel: str):
    path = _runs(request).get(name)
    target = V.run_file(path, rel) if path is not None else None
    if target is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(target.read_bytes(), media_type="image/png", headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"})


# ---- stats ---------------------------------------------------------------------------------------
def _bench_path(request: Request) -> Path | None:
    settings = _settings(request)
    given = getattr(settings, "bench", None)
    if given:
        return Path(given)
    for p in settings.runs:  # a served run trained by `genzoo bench` sits beside its report
        for folder in (Path(p).parent, Path(p).parent.parent):
            if (folder / "results.json").is_file():
                return folder
    return Path("bench_runs") if Path("bench_runs/results.json").is_file() else None


@router.get("/stats", response_class=HTMLResponse)
def stats(request: Request, by: str = "day"):
    from genzoo.store.stats import PERIODS, usage

    by = by if by in PERIODS else "day"

    def work():
        with open_store(request) as store:
            rows = usage(store, by=by)
        bars: dict[str, dict[str, int]] = {}
        for r in rows:
            bars.setdefault(r.period, {})[r.model] = r.generations
        chart = V.bar_chart(sorted(bars.items()), title=f"generations per {by} and model")
        table = [{"period": r.period, "model": r.model, "generations": r.generations, "ratings": r.ratings,
                  "mean": "-" if r.mean_rating is None else f"{r.mean_rating:.2f}",
                  "labels": ", ".join(f"{k} {v}" for k, v in r.labels.most_common()) or "-"} for r in rows]
        return {"chart": Markup(chart), "rows": table}

    bench = V.read_bench(_bench_path(request))
    return _store_page(request, "stats.html", work, title="Usage", by=by, periods=PERIODS, chart="", rows=[], bench=bench)
