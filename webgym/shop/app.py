"""The shop as a Starlette application: WebShop's pages over a SQLite catalog.

search -> results (10 per page, at most 50 hits) -> item page (one radio group per option
dimension, Buy Now) -> sub-pages Description / Features / Reviews / Attributes -> done page with
the reward, whose response also carries the purchase in the ``X-WebGym-Purchase`` header (so a
client learns the reward from the page itself). Plain HTML links and forms: it works with
JavaScript disabled. Every interactive element carries a stable element id in its ``bid``
attribute, written here, so a browser and a browserless client see the same ids. Episodes are
server-side sessions with the id in the URL.

A small JSON API under ``/api`` creates, inspects, clones and restores sessions for environments.
A request a client can send is answered 4xx, never 500: bodies are cut at ``MAX_BODY_BYTES``
(413), malformed JSON and restored states are 400 (a restored goal must be its task's, and a
restored purchase is recomputed, never taken on trust), a page number that is not one is 404;
sessions' memory is bounded (``webgym.shop.sessions``). Sessions expire after
``SESSION_IDLE_S`` unused (404 "expired"); a client address holds at most
``max_sessions_per_client`` sessions (past that, 429 unless its own least recently used one is
idle and can go); a full store replaces an idle session, never one in use (503 when all are in
use). Imports only ``webgym.shop``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from webgym.shop.catalog import Catalog
from webgym.shop.reward import get_reward
from webgym.shop.schema import Goal, Product, purchase_header
from webgym.shop.sessions import (
    IN_USE_S,
    MAX_SESSIONS_PER_CLIENT,
    SESSION_IDLE_S,
    SessionLimitError,
    SessionStore,
    ShopSession,
    session_from_json,
)
from webgym.shop.thumbnails import product_thumbnail

HERE = Path(__file__).parent
RESULTS_PER_PAGE = 10
MAX_RESULTS = 50  # WebShop shows at most 50 hits
MAX_QUERY_CHARS = 1000  # longer queries are cut here: they are still searched, never refused
MAX_BODY_BYTES = 1024 * 1024  # a longer request body is refused (413)
MAX_PAGE_DIGITS = 6  # a results page number has at most this many digits (there are 5 pages)
SUB_PAGES = ("Description", "Features", "Reviews", "Attributes")
NO_STORE = {"Cache-Control": "no-store"}  # back navigation must re-fetch the session's state


def purchase_price(product: Product) -> float:
    """The price an episode pays: the low end of the product's pricing (tasks use the same)."""
    return float(product["pricing"][0])


class ShopPages:
    """The request handlers, over one catalog and one session store."""

    def __init__(self, catalog: Catalog, sessions: SessionStore, default_split: str) -> None:
        self.catalog = catalog
        self.sessions = sessions
        self.default_split = default_split
        self.rng = random.Random()  # only for people starting a random task from the landing page
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            auto_reload=False,
        )

    # ---- helpers -------------------------------------------------------------------------
    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=NO_STORE)

    def error(self, status: int, message: str, session: ShopSession | None = None) -> HTMLResponse:
        titles = {
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            409: "Conflict",
            429: "Too Many Sessions",
            503: "The Shop Is Full",
        }
        return self.render(
            "error.html",
            status,
            status=status,
            title=titles.get(status, "Error"),
            message=message,
            session=session,
        )

    @staticmethod
    def owner(request: Request) -> str:
        """The client address a new session counts against (``max_sessions_per_client``)."""
        return request.client.host if request.client is not None else ""

    @staticmethod
    def refused(e: SessionLimitError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, e.status, headers={"Retry-After": "5"})

    def session_or_404(self, request: Request) -> ShopSession:
        session = self.sessions.get(request.path_params["sid"])
        if session is None:
            raise HTTPException(
                404,
                f"No session {request.path_params['sid']!r}: it never "
                "existed or has expired. Start a new one.",
            )
        return session

    def product_or_404(self, request: Request, session: ShopSession) -> Product:
        product = self.catalog.get(request.path_params["asin"])
        if product is None:
            raise HTTPException(404, f"No product {request.path_params['asin']!r}.")
        return product

    def visit(self, session: ShopSession, request: Request) -> None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        self.sessions.visit(session, path)

    @staticmethod
    def root(session: ShopSession) -> str:
        return f"/s/{session.session_id}"

    def finished_redirect(self, session: ShopSession) -> Response | None:
        if session.done:
            return RedirectResponse(f"{self.root(session)}/done", 303, headers=NO_STORE)
        return None

    # ---- human entry ---------------------------------------------------------------------
    async def landing(self, request: Request) -> Response:
        splits = list(self.catalog.splits().values())
        return self.render(
            "landing.html",
            session=None,
            splits=splits,
            n_products=len(self.catalog),
            n_categories=len(self.catalog.categories()),
        )

    async def start(self, request: Request) -> Response:
        form = await request.form()
        task_id = str(form.get("task_id") or "").strip()
        try:
            goal = self.catalog.task(task_id) if task_id else self._random_goal()
        except KeyError as e:
            return self.error(404, str(e.args[0]) if e.args else f"No task {task_id!r}.")
        try:
            session = self.sessions.create(goal, self.owner(request))
        except SessionLimitError as e:
            return self.error(e.status, str(e))
        return RedirectResponse(self.root(session), 303)

    def _random_goal(self) -> Goal:
        return self.rng.choice(self.catalog.split(self.default_split).goals)

    # ---- the episode pages ---------------------------------------------------------------
    async def search_page(self, request: Request) -> Response:
        session = self.session_or_404(request)
        if (r := self.finished_redirect(session)) is not None:
            return r
        self.visit(session, request)
        return self.render("search.html", session=session)

    async def results_page(self, request: Request) -> Response:
        session = self.session_or_404(request)
        if (r := self.finished_redirect(session)) is not None:
            return r
        keywords = request.query_params.get("q", "")[:MAX_QUERY_CHARS]
        raw_page = request.query_params.get("page", "1")
        digits = raw_page.isascii() and raw_page.isdigit() and len(raw_page) <= MAX_PAGE_DIGITS
        if not digits or int(raw_page) < 1:
            shown = raw_page if len(raw_page) <= 20 else raw_page[:20] + "..."
            return self.error(404, f"No results page {shown!r}.", session)
        page = int(raw_page)
        asins = self.catalog.search(keywords, limit=MAX_RESULTS)
        n_pages = max(1, math.ceil(len(asins) / RESULTS_PER_PAGE))
        if page > n_pages:
            return self.error(404, f"No results page {page}: there are {n_pages}.", session)
        shown = asins[(page - 1) * RESULTS_PER_PAGE : page * RESULTS_PER_PAGE]
        products = [p for a in shown if (p := self.catalog.get(a)) is not None]
        session.last_search = (keywords, page)
        self.visit(session, request)
        return self.render(
            "results.html",
            session=session,
            keywords=keywords,
            page=page,
            n_pages=n_pages,
            total=len(asins),
            products=products,
        )

    def _prev_url(self, session: ShopSession) -> str:
        if session.last_search is None:
            return self.root(session)
        keywords, page = session.last_search
        return f"{self.root(session)}/search?{urlencode({'q': keywords, 'page': page})}"

    def _enter_item(self, session: ShopSession, asin: str) -> None:
        if session.current_asin != asin:  # a new item starts with no options chosen, as in WebShop
            session.current_asin = asin
            session.options = {}

    def _item(
        self, session: ShopSession, product: Product, status: int = 200, error: str | None = None
    ) -> HTMLResponse:
        return self.render(
            "item.html",
            status,
            session=session,
            product=product,
            chosen=session.options,
            sub_pages=SUB_PAGES,
            prev_url=self._prev_url(session),
            error=error,
        )

    async def item_page(self, request: Request) -> Response:
        session = self.session_or_404(request)
        if (r := self.finished_redirect(session)) is not None:
            return r
        product = self.product_or_404(request, session)
        self._enter_item(session, product["asin"])
        self.visit(session, request)
        return self._item(session, product)

    async def item_sub_page(self, request: Request) -> Response:
        session = self.session_or_404(request)
        if (r := self.finished_redirect(session)) is not None:
            return r
        product = self.product_or_404(request, session)
        sub = request.path_params["sub"].lower()
        names = {s.lower(): s for s in SUB_PAGES}
        if sub not in names:
            return self.error(
                404,
                f"No page {sub!r} for a product: choose one of {', '.join(SUB_PAGES)}.",
                session,
            )
        self._enter_item(session, product["asin"])
        self.visit(session, request)
        item_url = f"{self.root(session)}/item/{product['asin']}"
        return self.render(
            "item_sub.html",
            session=session,
            product=product,
            sub_page=names[sub],
            prev_url=item_url,
        )

    async def choose_option(self, request: Request) -> Response:
        session = self.session_or_404(request)
        if (r := self.finished_redirect(session)) is not None:
            return r
        product = self.product_or_404(request, session)
        self._enter_item(session, product["asin"])
        form = await request.form()
        options = product.get("options") or {}
        for dim, value in form.multi_items():
            value = str(value)
            if dim not in options:
                return self._item(
                    session,
                    product,
                    400,
                    f"This product has no option {dim!r}"
                    + (f"; its options are: {', '.join(options)}." if options else "."),
                )
            if value not in options[dim]:
                return self._item(
                    session,
                    product,
                    400,
                    f"This product has no {dim} {value!r}; "
                    f"choose one of: {', '.join(options[dim])}.",
                )
            session.options[dim] = value
        return RedirectResponse(
            f"{self.root(session)}/item/{product['asin']}", 303, headers=NO_STORE
        )

    async def buy(self, request: Request) -> Response:
        session = self.session_or_404(request)
        if session.done:
            return self.error(409, "This episode is over: a product was already bought.", session)
        product = self.product_or_404(request, session)
        self._enter_item(session, product["asin"])
        session.purchase = self.purchase(session, product, dict(session.options))
        return RedirectResponse(f"{self.root(session)}/done", 303, headers=NO_STORE)

    def purchase(self, session: ShopSession, product: Product, options: dict[str, str]) -> dict:
        """What buying ``product`` with ``options`` gives in ``session``: WebShop's reward (the
        titles' nouns from the catalog: ``Catalog.title_nouns``)."""
        price = purchase_price(product)
        nouns = self.catalog.title_nouns
        reward, info = get_reward(product, session.goal, price, options, verbose=True, nouns=nouns)
        return {
            "asin": product["asin"],
            "title": product["Title"],
            "price": price,
            "options": dict(options),
            "reward": float(reward),
            "info": info,
        }

    def _restore(self, state: Any, owner: str) -> ShopSession:
        """A live session from a client's state: checked, its goal the catalog's, its purchase
        (if any) recomputed. ``ValueError`` says what is wrong."""
        session = session_from_json(state)
        task_id = session.goal.get("task_id")
        try:
            goal = self.catalog.task(task_id) if isinstance(task_id, str) else None
        except KeyError:
            goal = None
        if goal is None or session.goal != goal:
            raise ValueError("'goal' must be the goal of one of the catalog's tasks, unchanged")
        if session.purchase is not None:
            product = self.catalog.get(session.purchase.get("asin"))
            options = session.purchase.get("options")
            if product is None or not isinstance(options, dict):
                raise ValueError("'purchase' must name a product of the catalog and its options")
            if not all(isinstance(v, str) for v in options.values()):
                raise ValueError("'purchase.options' must map dimensions to values (strings)")
            session.purchase = self.purchase(session, product, options)
        return self.sessions.add(session, owner)

    async def done_page(self, request: Request) -> Response:
        session = self.session_or_404(request)
        if not session.done:
            return self.error(404, "Nothing has been bought in this session yet.", session)
        self.visit(session, request)
        response = self.render("done.html", session=session, purchase=session.purchase)
        response.headers.update(purchase_header(session.purchase))
        return response

    async def thumbnail(self, request: Request) -> Response:
        product = self.catalog.get(request.path_params["asin"])
        if product is None:
            raise HTTPException(404, f"No product {request.path_params['asin']!r}.")
        return Response(
            product_thumbnail(product),
            media_type="image/png",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    # ---- the JSON API for environments ---------------------------------------------------
    async def api_create(self, request: Request) -> Response:
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
            return JSONResponse({"error": "the body must be JSON (nested at most ~900 deep)"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        if "state" in body:
            try:
                session = self._restore(body["state"], self.owner(request))
            except SessionLimitError as e:
                return self.refused(e)
            except (KeyError, TypeError, ValueError, RecursionError) as e:
                return JSONResponse({"error": f"not a session state: {e}"}, 400)
        else:
            task_id = body.get("task_id")
            if not isinstance(task_id, str):
                return JSONResponse({"error": "give 'task_id' (a string) or 'state'"}, 400)
            try:
                goal = self.catalog.task(task_id)
            except KeyError as e:
                return JSONResponse({"error": str(e.args[0]) if e.args else task_id}, 404)
            try:
                session = self.sessions.create(goal, self.owner(request))
            except SessionLimitError as e:
                return self.refused(e)
        return JSONResponse(self._api_view(session), 201)

    def _api_view(self, session: ShopSession) -> dict[str, Any]:
        return {**session.to_json(), "url": self.root(session)}

    def _api_session(self, request: Request) -> ShopSession | JSONResponse:
        session = self.sessions.get(request.path_params["sid"])
        if session is None:
            return JSONResponse({"error": f"no session {request.path_params['sid']!r}"}, 404)
        return session

    async def api_session(self, request: Request) -> Response:
        session = self._api_session(request)
        if isinstance(session, Response):
            return session
        if request.method == "DELETE":
            self.sessions.delete(session.session_id)
            return JSONResponse({"deleted": session.session_id})
        return JSONResponse(self._api_view(session))

    async def api_clone(self, request: Request) -> Response:
        session = self._api_session(request)
        if isinstance(session, Response):
            return session
        try:
            twin = self.sessions.clone(session.session_id, self.owner(request))
        except SessionLimitError as e:
            return self.refused(e)
        if twin is None:  # expired in between
            return JSONResponse({"error": f"no session {session.session_id!r}"}, 404)
        return JSONResponse(self._api_view(twin), 201)

    async def api_tasks(self, request: Request) -> Response:
        splits = self.catalog.splits()
        name = request.query_params.get("split")
        if name is None:
            return JSONResponse({s.name: {"size": s.size, "hash": s.hash} for s in splits.values()})
        try:
            split = self.catalog.split(name)
        except KeyError as e:  # names the splits there are, and where this one is
            return JSONResponse({"error": str(e.args[0])}, 404)
        return JSONResponse({"split": name, "hash": split.hash, "task_ids": split.task_ids})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse(
            {"ok": True, "products": len(self.catalog), "sessions": len(self.sessions)}
        )


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered 413 before the app sees
    it (by its Content-Length, or as it streams in); a smaller one is handed on whole."""

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length[:20]) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Any, receive: Any, send: Any) -> None:
        response = JSONResponse(
            {"error": f"the request body is over {self.max_bytes} bytes"},
            413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def create_app(
    catalog: Catalog,
    *,
    max_sessions: int = 20_000,
    default_split: str = "test",
    session_idle_s: float = SESSION_IDLE_S,
    session_in_use_s: float = IN_USE_S,
    max_sessions_per_client: int = MAX_SESSIONS_PER_CLIENT,
) -> Starlette:
    """The shop application over ``catalog`` (a ``Catalog`` opened read-only). Sessions: at most
    ``max_sessions``, ``max_sessions_per_client`` per client address, expired after
    ``session_idle_s`` unused, in use for ``session_in_use_s`` after each use
    (``webgym.shop.sessions``)."""
    store = SessionStore(
        max_sessions,
        idle_s=session_idle_s,
        in_use_s=session_in_use_s,
        max_per_client=max_sessions_per_client,
    )
    pages = ShopPages(catalog, store, default_split)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, exc.status_code)
        session = (
            pages.sessions.get(request.path_params.get("sid", ""))
            if hasattr(request, "path_params")
            else None
        )
        message = (
            exc.detail
            if exc.status_code != 404 or exc.detail != "Not Found"
            else (f"No page at {request.url.path!r}.")
        )
        return pages.error(exc.status_code, message, session)

    routes = [
        Route("/", pages.landing),
        Route("/start", pages.start, methods=["POST"]),
        Route("/healthz", pages.healthz),
        Route("/img/{asin}.png", pages.thumbnail),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        Route("/api/sessions", pages.api_create, methods=["POST"]),
        Route("/api/sessions/{sid}", pages.api_session, methods=["GET", "DELETE"]),
        Route("/api/sessions/{sid}/clone", pages.api_clone, methods=["POST"]),
        Route("/api/tasks", pages.api_tasks),
        Route("/s/{sid}", pages.search_page),
        Route("/s/{sid}/search", pages.results_page),
        Route("/s/{sid}/done", pages.done_page),
        Route("/s/{sid}/item/{asin}", pages.item_page),
        Route("/s/{sid}/item/{asin}/option", pages.choose_option, methods=["POST"]),
        Route("/s/{sid}/item/{asin}/buy", pages.buy, methods=["POST"]),
        Route("/s/{sid}/item/{asin}/{sub}", pages.item_sub_page),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)],
    )
    app.state.pages = pages
    return app
