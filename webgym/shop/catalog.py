"""The shop's catalog: products and tasks in one read-only SQLite file, searched with FTS5 BM25.

WebShop searches its catalog with Pyserini (Java Lucene, BM25) and keeps every product in RAM
(~15 GB for the full set). WebGym writes products, the task splits and some metadata into a
single SQLite file once (``build_catalog``) and serves it read-only (``Catalog``): SQLite's FTS5
gives BM25 ranking, the page cache is shared between processes, and nothing but the products on
screen is decoded.

File layout (``SCHEMA_VERSION`` 4; 1 lacked ``term_df``, 2 the options column, 3 also indexed
the query, the category breadcrumb, the Attributes list and every bullet point):

- ``products(id INTEGER PRIMARY KEY, asin TEXT UNIQUE, doc TEXT)``: ``doc`` is the product JSON.
  ``id`` is the FTS rowid (an explicit integer key, so it survives VACUUM); ``asin`` is the key
  every caller uses.
- ``fts``: a contentless FTS5 table (rowid = ``products.id``) over what WebShop's Lucene index
  holds (``search_engine/convert_product_file_format.py``): the title, the description, the
  first bullet point and the options (WebShop's text "color: red, blue, and size: s, m"), each
  in its own column. Not indexed, as in WebShop: the Attributes list (so a product's attributes
  are found only where its text names them; the shopper reads the item page to check the
  rest), the category breadcrumb and the ``query`` field (WebShop's scrape query, a label the
  reward uses, not product text; synthetic titles name their type anyway). Tokenizer
  ``porter unicode61 remove_diacritics 2``; its stored ``rank`` is ``bm25()`` with the column
  weights ``BM25_WEIGHTS``. WebShop ranks one field; the title weighs most here so that a word
  in a title beats the same word deep in a description.
- ``tasks(task_id TEXT PRIMARY KEY, split TEXT, position INTEGER, doc TEXT)``: goal JSON.
- ``term_df(term TEXT PRIMARY KEY, df INTEGER, title_df INTEGER)``: document frequency (all
  columns, title only) of each indexed (stemmed) term found in at least ``DF_TABLE_MIN``
  products: the search planner's statistics.
- ``meta(key TEXT PRIMARY KEY, value TEXT)``: JSON values (source, product_count,
  schema_version, built_at, split_hashes, split_sizes, categories, content_hash, file_sha256,
  title_nouns_tagger where there is a ``title_nouns`` table, plus the caller's ``meta``).
- ``title_nouns(title TEXT PRIMARY KEY, nouns TEXT)``, in the embedded catalogs (``build_catalog(
  ..., title_nouns=True)``; optional, so files without it read as before): the reward's noun list
  (``webgym.shop.reward.title_nouns``, a JSON list) of every product and goal name, computed at
  build time, one title at a time as a purchase computes it, with the tagger whose package
  versions ``title_nouns_tagger`` names. ``Catalog.title_nouns`` reads it where those versions
  are the installed ones, and tags anything else: a purchase then needs no tagger at all (the
  spaCy import and ~1.5 ms a new title were a third of ``webgym-bench verify``'s time). Derived
  data, like ``term_df``: outside ``content_hash``, inside the file's seal.

Integrity: ``content_hash`` (16 hex digits) hashes what the catalog holds (every product and
task document, in order, and the metadata but ``built_at`` and ``title_nouns_tagger``): equal
for two builds of the same catalog, recorded in each run's manifest and compared by the
leaderboard. ``file_sha256`` seals the file itself: the SHA-256 of the file's bytes with that
value's own 64 bytes read as ``_SEAL_PLACEHOLDER``, written into its slot after the build.
``Catalog`` checks it on open (one pass over the file: ~14 ms for the 20 MB embedded catalog),
so a file damaged or altered after its build is refused (``CatalogDamaged``, with the command
that rebuilds it) instead of serving wrong products; a read error later is raised, never taken
for an empty result. A build writes a temporary file named after its process, removed when the
build fails or is interrupted (SIGTERM included), and a later build removes those of dead
processes (SIGKILL).

The embedded catalogs (``default_catalog``, ``ood_catalog``): the synthetic catalog holds the
train / validation / test splits; its *ood companion*, a second file, holds the same products
plus those of the out-of-distribution types (``webgym.shop.synthetic.OOD_PRODUCT_TYPES``) and
only the ``ood`` split. Two files, not one, because a search ranks by the statistics of the
whole file (BM25's document count, document frequencies, mean length; ``term_df``): products
added to the embedded file would change what searches for the existing tasks return, and its
``content_hash`` that every recorded run names. ``open_catalog(split=...)`` opens the one
that holds a split.

Thread safety: ``Catalog`` opens one SQLite connection per thread (``threading.local``), so the
web server's thread pool searches in parallel (sqlite3 releases the GIL while a query runs).
Products returned by ``get()`` come from a shared LRU cache: treat them as read-only
(``copy.deepcopy`` one before changing it).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import mmap
import os
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from webgym.shop.schema import Goal, Product
from webgym.shop.tasks import OOD_SPLIT, TaskSplit

SCHEMA_VERSION = 4
SEARCH_RETURN_N = 50  # WebShop's SEARCH_RETURN_N
MAX_QUERY_TERMS = 32
# bm25() weights per FTS column, in column order.
# WebShop's Lucene index text (search_engine/convert_product_file_format.py): Title, Description,
# the first bullet point and the options; not the Attributes list, the category or the query.
FTS_COLUMNS = ("title", "description", "bullet", "options")
BM25_WEIGHTS = (10.0, 1.0, 2.0, 2.0)
TOKENIZER = "porter unicode61 remove_diacritics 2"
# Lucene's default English stop words (Pyserini's analyzer, which WebShop's index used).
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
_TOKEN_RE = re.compile(r"\w+")
# Search cost grows with the number of documents matching the query (bm25() runs on each), so
# query terms are taken rarest first until their summed document frequencies pass this budget
# (the rarest term is always kept). Terms past it are frequent enough that their BM25 weight
# is small; WebShop-style templated text makes many words frequent. See ``Catalog.search``.
POSTINGS_BUDGET = 6000
DF_TABLE_MIN = 200  # terms in at least this many products get a row in ``term_df``
_BATCH = 2000
CATALOG_ENV = "WEBGYM_CATALOG"
CACHE_DIR_ENV = "WEBGYM_CACHE_DIR"
SYNTHETIC, SYNTHETIC_OOD = "synthetic", "synthetic-ood"  # the embedded catalogs' sources
# The slot ``file_sha256`` is written into: 64 ASCII bytes, found once in a sealed file.
_SEAL_PLACEHOLDER = "webgym-catalog-unsealed-" + "0" * 40
# Derived from the content and the tagger that computed it, not content: outside the hash.
_UNHASHED_META = ("built_at", "content_hash", "file_sha256", "title_nouns_tagger")


class CatalogDamaged(ValueError):
    """The catalog file is not the one that was built (altered, truncated, unreadable)."""


def rebuild_hint(meta: dict[str, Any] | None = None) -> str:
    """The command that rebuilds a catalog with this ``meta``."""
    meta = meta or {}
    if meta.get("source") in (SYNTHETIC, SYNTHETIC_OOD) and "n_products" in meta:
        return (
            f"rebuild it with `webgym shop build --n-products {meta['n_products']} "
            f"--seed {meta.get('seed', 0)}`"
        )
    return (
        "rebuild it (`webgym shop build` for the synthetic catalog, "
        "`webgym shop import-webshop` for WebShop's data)"
    )


def _sealed_digest(mm: mmap.mmap, slot: int) -> str:
    """SHA-256 of the mapped file with the 64 bytes at ``slot`` read as the placeholder."""
    digest = hashlib.sha256()
    with memoryview(mm) as view:
        digest.update(view[:slot])
        digest.update(_SEAL_PLACEHOLDER.encode())
        digest.update(view[slot + 64 :])
    return digest.hexdigest()


def _seal(path: Path) -> str:
    """Write the file's own hash into its ``file_sha256`` slot; returns the hash."""
    marker = _SEAL_PLACEHOLDER.encode()
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        slot = mm.find(marker)
        if slot < 0 or mm.find(marker, slot + 1) >= 0:
            raise RuntimeError(f"{path}: cannot seal the catalog (no unique hash slot)")
        digest = _sealed_digest(mm, slot)
        mm[slot : slot + 64] = digest.encode()
        mm.flush()
    return digest


def file_damage(path: Path, recorded: Any) -> str | None:
    """Why the file at ``path`` is not the one sealed with ``recorded``, or None if it is."""
    if not isinstance(recorded, str) or not re.fullmatch(r"[0-9a-f]{64}", recorded):
        return "it has no integrity record (built by an older WebGym, or altered)"
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        slot = mm.find(recorded.encode())
        if slot < 0 or _sealed_digest(mm, slot) != recorded:
            return "its bytes differ from the ones written when it was built"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_builds(path: Path) -> list[Path]:
    """Remove the temporary files of builds of ``path`` whose process is gone."""
    removed = []
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        pid = tmp.name[len(Path(path).name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _raise_exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


# ----------------------------------------------------------------------------------------------
# Build


def _fts_row(rowid: int, p: Product) -> tuple[Any, ...]:
    bullets = [b for b in (p.get("BulletPoints") or []) if isinstance(b, str)]
    return (
        rowid,
        p.get("Title") or p.get("name") or "",
        p.get("Description") or "",
        bullets[0] if bullets else "",
        # WebShop's index text for options: "color: red, blue, and size: s, m"
        ", and ".join(f"{k}: {', '.join(v)}" for k, v in (p.get("options") or {}).items()),
    )


class CatalogBuilder:
    """Streams products (and then the task splits) into a new catalog file.

    ``build_catalog`` is the one-call form. The file appears at ``path`` only when ``finish()``
    succeeds (written under a temporary name in the same folder, then ``os.replace``); leaving
    the ``with`` block on an exception removes the temporary file, and inside it (in the main
    thread) SIGTERM is such an exception. Temporary files of killed builds are removed by the
    next build of the same path.
    """

    def __init__(
        self,
        path: Path,
        *,
        source: str,
        meta: dict[str, Any] | None = None,
        title_nouns: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_builds(self.path)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.{os.getpid()}.", suffix=".tmp", dir=str(self.path.parent)
        )
        os.close(fd)
        self._tmp = Path(tmp)
        self._source = source
        self._meta = dict(meta or {})
        self._content = hashlib.sha256()
        self._old_sigterm: Any = None
        self._n = 0
        self._categories: set[str] = set()
        self._splits: dict[str, TaskSplit] | None = None
        # the product and goal names whose reward nouns the file keeps (``title_nouns``)
        self._names: set[str] | None = set() if title_nouns else None
        self._done = False
        self._db = sqlite3.connect(str(self._tmp), isolation_level=None)
        db = self._db
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA temp_store=MEMORY")
        db.execute("PRAGMA cache_size=-262144")  # 256 MiB
        db.execute("PRAGMA page_size=8192")
        db.execute("BEGIN")
        db.execute(
            "CREATE TABLE products(id INTEGER PRIMARY KEY, asin TEXT NOT NULL UNIQUE, "
            "doc TEXT NOT NULL)"
        )
        cols = ", ".join(FTS_COLUMNS)
        db.execute(
            f"CREATE VIRTUAL TABLE fts USING fts5({cols}, content='', tokenize='{TOKENIZER}')"
        )
        weights = ", ".join(str(w) for w in BM25_WEIGHTS)
        db.execute("INSERT INTO fts(fts, rank) VALUES('rank', ?)", (f"bm25({weights})",))
        db.execute("INSERT INTO fts(fts, rank) VALUES('automerge', 0)")
        db.execute("INSERT INTO fts(fts, rank) VALUES('crisismerge', 64)")
        db.execute(
            "CREATE TABLE tasks(task_id TEXT PRIMARY KEY, split TEXT NOT NULL, "
            "position INTEGER NOT NULL, doc TEXT NOT NULL)"
        )
        db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def __enter__(self) -> CatalogBuilder:
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._old_sigterm = signal.signal(signal.SIGTERM, _raise_exit)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is not None or not self._done:
                self.abort()
        finally:
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    def add_products(self, products: Iterable[Product]) -> int:
        """Append products; returns how many were added. A repeated asin raises ValueError."""
        added = 0
        batch_p: list[tuple[int, str, str]] = []
        batch_f: list[tuple[Any, ...]] = []

        def flush() -> None:
            try:
                self._db.executemany("INSERT INTO products(id, asin, doc) VALUES(?,?,?)", batch_p)
            except sqlite3.IntegrityError as e:
                raise ValueError(f"duplicate asin in the products: {e}") from None
            self._db.executemany(
                f"INSERT INTO fts(rowid, {', '.join(FTS_COLUMNS)}) "
                f"VALUES(?{', ?' * len(FTS_COLUMNS)})",
                batch_f,
            )
            batch_p.clear()
            batch_f.clear()

        for p in products:
            self._n += 1
            doc = json.dumps(p, ensure_ascii=False)
            self._content.update(doc.encode("utf-8", "surrogatepass") + b"\n")
            batch_p.append((self._n, p["asin"], doc))
            batch_f.append(_fts_row(self._n, p))
            if p.get("category"):
                self._categories.add(p["category"])
            if self._names is not None:
                self._names.add(p.get("name", ""))
            added += 1
            if len(batch_p) >= _BATCH:
                flush()
        if batch_p:
            flush()
        return added

    def add_meta(self, meta: dict[str, Any]) -> None:
        """More ``meta`` entries (JSON values); the builder's own keys win on a clash."""
        self._meta.update(meta)

    def set_splits(self, splits: dict[str, TaskSplit]) -> None:
        rows = []
        for name, split in splits.items():
            if split.name != name:
                raise ValueError(f"split key {name!r} holds a split named {split.name!r}")
            for i, goal in enumerate(split.goals):
                rows.append((goal["task_id"], name, i, json.dumps(goal, ensure_ascii=False)))
                if self._names is not None:
                    self._names.add(goal.get("name", ""))
        for row in rows:
            self._content.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
        try:
            self._db.executemany(
                "INSERT INTO tasks(task_id, split, position, doc) VALUES(?,?,?,?)", rows
            )
        except sqlite3.IntegrityError as e:
            raise ValueError(f"task ids must be unique across splits: {e}") from None
        self._splits = dict(splits)

    def finish(self) -> Path:
        db = self._db
        splits = self._splits or {}
        meta: dict[str, Any] = {
            **self._meta,
            "source": self._source,
            "product_count": self._n,
            "schema_version": SCHEMA_VERSION,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "split_hashes": {name: s.hash for name, s in splits.items()},
            "split_sizes": {name: s.size for name, s in splits.items()},
            "categories": sorted(self._categories),
            "fts_columns": list(FTS_COLUMNS),
            "bm25_weights": list(BM25_WEIGHTS),
            "tokenizer": TOKENIZER,
        }
        if self._names is not None:
            meta["title_nouns_tagger"] = self._write_title_nouns()
        for key in sorted(meta):
            if key not in _UNHASHED_META:
                self._content.update(json.dumps([key, meta[key]], sort_keys=True).encode() + b"\n")
        meta["content_hash"] = self._content.hexdigest()[:16]
        meta["file_sha256"] = _SEAL_PLACEHOLDER
        db.executemany(
            "INSERT INTO meta(key, value) VALUES(?, ?)",
            [(k, json.dumps(v, ensure_ascii=False)) for k, v in meta.items()],
        )
        db.execute("INSERT INTO fts(fts) VALUES('optimize')")
        db.execute(
            "CREATE TABLE term_df(term TEXT PRIMARY KEY, df INTEGER NOT NULL, "
            "title_df INTEGER NOT NULL) WITHOUT ROWID"
        )
        db.execute("CREATE VIRTUAL TABLE temp.vocab_row USING fts5vocab(main, fts, row)")
        db.execute("CREATE VIRTUAL TABLE temp.vocab_col USING fts5vocab(main, fts, col)")
        db.execute("CREATE TEMP TABLE title_df(term TEXT PRIMARY KEY, df INTEGER) WITHOUT ROWID")
        db.execute(
            "INSERT INTO temp.title_df SELECT term, doc FROM temp.vocab_col WHERE col = 'title'"
        )
        db.execute(
            "INSERT INTO term_df(term, df, title_df) SELECT r.term, r.doc, coalesce(t.df, 0) "
            "FROM temp.vocab_row AS r LEFT JOIN temp.title_df AS t ON t.term = r.term "
            "WHERE r.doc >= ?",
            (DF_TABLE_MIN,),
        )
        for table in ("vocab_row", "vocab_col", "title_df"):
            db.execute(f"DROP TABLE temp.{table}")
        db.execute("COMMIT")
        db.execute("PRAGMA optimize")
        db.close()
        _seal(self._tmp)
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)
        self._done = True
        return self.path

    def _write_title_nouns(self) -> str:
        """The reward's noun list of every product and goal name (``reward.title_nouns``, one
        title at a time, exactly as a purchase computes it) into ``title_nouns``; returns the
        tagger's versions, which a reader must have for the table to be used."""
        from webgym.shop.reward import tagger_version, title_nouns

        self._db.execute(
            "CREATE TABLE title_nouns(title TEXT PRIMARY KEY, nouns TEXT NOT NULL) WITHOUT ROWID"
        )
        self._db.executemany(
            "INSERT INTO title_nouns(title, nouns) VALUES(?, ?)",
            (
                (t, json.dumps(title_nouns(t), ensure_ascii=False))
                for t in sorted(self._names or ())
            ),
        )
        return tagger_version()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._db.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()


def build_catalog(
    products: Iterable[Product],
    splits: dict[str, TaskSplit],
    path: Path,
    *,
    source: str,
    meta: dict[str, Any] | None = None,
    title_nouns: bool = False,
) -> Path:
    """Write products and task splits into one SQLite catalog file at ``path`` (atomically);
    ``title_nouns``: with the reward's nouns of every product and goal name (see the module
    docstring)."""
    with CatalogBuilder(Path(path), source=source, meta=meta, title_nouns=title_nouns) as b:
        b.add_products(products)
        b.set_splits(splits)
        return b.finish()


# ----------------------------------------------------------------------------------------------
# Search query


def query_terms(query: str) -> list[str]:
    """The word tokens of a user query: unicode ``\\w+``, lower-cased, de-duplicated, Lucene's
    English stop words dropped (unless nothing else is left), at most ``MAX_QUERY_TERMS``."""
    if not isinstance(query, str):
        return []
    seen: dict[str, None] = dict.fromkeys(_TOKEN_RE.findall(query[:20_000].lower()))
    words = [t for t in seen if t not in STOP_WORDS] or list(seen)
    return words[:MAX_QUERY_TERMS]


def match_expression(terms: Iterable[str]) -> str | None:
    """Each term quoted as an FTS5 string, joined with OR; None when there are none."""
    quoted = ['"' + t.replace('"', '""') + '"' for t in terms]
    return " OR ".join(quoted) if quoted else None


def fts_query(query: str) -> str | None:
    """Any user string as a safe FTS5 MATCH expression (all its terms), or None."""
    return match_expression(query_terms(query))


# ORDER BY bm25(...) with literal weights runs ~1.4x faster than ORDER BY rank (the same
# function, configured in the file) in SQLite 3.40.
_SEARCH_SQL = (
    "SELECT p.asin FROM (SELECT rowid AS rid, bm25(fts, {w}) AS r FROM fts "
    "WHERE fts MATCH ? AND rowid <= ? ORDER BY r LIMIT ?) AS h "
    "JOIN products AS p ON p.id = h.rid ORDER BY h.r, h.rid"
).format(w=", ".join(str(w) for w in BM25_WEIGHTS))

_stem_local = threading.local()
_stem_cache: dict[str, tuple[str, ...]] = {}


def stems(tokens: list[str]) -> list[tuple[str, ...]]:
    """The index terms FTS5 makes of each token (porter stems; several for "a_b"; none for "_").

    Runs the catalog's own tokenizer on a per-thread in-memory FTS5 table; cached per token.
    """
    known = {t: _stem_cache.get(t) for t in tokens}
    missing = [t for t, v in known.items() if v is None]
    if missing:
        db = getattr(_stem_local, "db", None)
        if db is None:
            db = sqlite3.connect(":memory:")
            db.execute(f"CREATE VIRTUAL TABLE s USING fts5(x, tokenize='{TOKENIZER}')")
            db.execute("CREATE VIRTUAL TABLE si USING fts5vocab(s, instance)")
            _stem_local.db = db
        db.execute("DELETE FROM s")
        db.executemany("INSERT INTO s(rowid, x) VALUES(?, ?)", list(enumerate(missing)))
        found: dict[int, list[str]] = {}
        for doc, term in db.execute("SELECT doc, term FROM si ORDER BY doc, offset"):
            found.setdefault(doc, []).append(term)
        if len(_stem_cache) > 200_000:
            _stem_cache.clear()
        for i, t in enumerate(missing):
            known[t] = _stem_cache[t] = tuple(found.get(i, ()))
    return [known[t] or () for t in tokens]


# ----------------------------------------------------------------------------------------------
# Reading


class Catalog:
    """A read-only catalog file. Safe to share between threads (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no catalog file at {self.path}")
        self._uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._splits: dict[str, TaskSplit] | None = None
        self._df: dict[str, tuple[int, int]] | None = None
        self._get_cached = lru_cache(maxsize=4096)(self._load)
        self._nouns_table: bool | None = None  # usable? decided on first use
        try:
            rows = self._conn().execute("SELECT key, value FROM meta").fetchall()
            self.meta: dict[str, Any] = {k: json.loads(v) for k, v in rows}
        except sqlite3.DatabaseError as e:
            self.close()
            raise ValueError(
                f"{self.path} is not a WebGym catalog, or is damaged ({e}): {rebuild_hint()}"
            ) from None
        except ValueError as e:  # undecodable metadata
            self.close()
            raise CatalogDamaged(f"{self.path} is damaged ({e}): {rebuild_hint()}") from None
        version = self.meta.get("schema_version")
        if version != SCHEMA_VERSION or self.meta.get("fts_columns") != list(FTS_COLUMNS):
            self.close()
            raise ValueError(
                f"{self.path} has catalog schema version {version}, this WebGym reads "
                f"{SCHEMA_VERSION}: {rebuild_hint(self.meta)}"
            )
        damage = file_damage(self.path, self.meta.get("file_sha256"))
        if damage is not None:
            self.close()
            raise CatalogDamaged(f"{self.path} is damaged: {damage}; {rebuild_hint(self.meta)}")
        self._len = int(self.meta.get("product_count", 0))

    @classmethod
    def open(cls, path: Path | str) -> Catalog:
        return cls(Path(path))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every thread's connection (the catalog must not be used afterwards)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(Exception):
                c.close()
        self._local = threading.local()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, products={self._len}, source={self.source!r})"

    @property
    def source(self) -> str:
        return str(self.meta.get("source", ""))

    @property
    def content_hash(self) -> str:
        """16 hex digits of what the catalog holds (equal for two builds of the same catalog)."""
        return str(self.meta.get("content_hash", ""))

    def _damaged(self, err: Exception) -> CatalogDamaged:
        return CatalogDamaged(
            f"cannot read catalog {self.path} ({type(err).__name__}: {err}): it is damaged; "
            f"{rebuild_hint(self.meta)}"
        )

    # products --------------------------------------------------------------------------------

    def search(self, query: str, limit: int = SEARCH_RETURN_N) -> list[str]:
        """Asins of the best ``limit`` BM25 matches, best first. Never raises on user input.

        The query's word tokens are OR-ed (quoted, so FTS5 syntax in the input is just text).
        To bound latency, terms are taken rarest first while their summed document frequencies
        stay within ``POSTINGS_BUDGET`` (always at least the rarest one); the dropped, frequent
        terms carry little BM25 weight (idf ~ log(N / df)).
        """
        try:
            limit = max(0, min(int(limit), 10_000))
        except (TypeError, ValueError):
            limit = SEARCH_RETURN_N
        # The input reaches SQLite only quoted, so a read error is the file's: raised, never an
        # empty result.
        try:
            planned = self._plan(query_terms(query))
            if planned is None or limit == 0:
                return []
            match, max_rowid = planned
            rows = self._conn().execute(_SEARCH_SQL, (match, max_rowid, limit)).fetchall()
        except sqlite3.Error as e:
            raise self._damaged(e) from None
        return [r[0] for r in rows]

    def _plan(self, terms: list[str]) -> tuple[str, int] | None:
        """The MATCH expression for ``terms`` and the largest rowid to rank, or None.

        Terms are taken rarest first while their summed document frequencies stay within
        ``POSTINGS_BUDGET``. When even the rarest term is over it (a lone frequent word such
        as "free"), only products with it in the title are ranked (the title weighs most in
        bm25), and when those are still too many, only the first ``POSTINGS_BUDGET`` or so of
        them in catalog order.
        """
        if not terms:
            return None
        df = self._term_df()
        costed = []
        for i, (term, term_stems) in enumerate(zip(terms, stems(terms), strict=True)):
            if term_stems:  # a phrase matches at most as often as its rarest word
                cost = min(df.get(st, (0, 0)) for st in term_stems)
                costed.append((cost, i, term))
        if not costed:
            return None
        costed.sort()
        kept, total = [], 0
        for (cost, _title_cost), i, term in costed:
            if kept and total + cost > POSTINGS_BUDGET:
                break
            kept.append((i, term))
            total += cost
        everything = self._len + 1
        if total <= POSTINGS_BUDGET:
            return match_expression(term for _, term in sorted(kept)), everything
        (cost, title_cost), _, term = costed[0]
        if title_cost:
            expr, cost = "{title} : " + match_expression([term]), title_cost
        else:
            expr = match_expression([term]) or ""
        if cost <= POSTINGS_BUDGET:
            return expr, everything
        return expr, max(1, self._len * POSTINGS_BUDGET // cost)

    def _term_df(self) -> dict[str, tuple[int, int]]:
        """term -> (document frequency, title document frequency), for frequent terms."""
        df = self._df
        if df is None:
            rows = self._conn().execute("SELECT term, df, title_df FROM term_df").fetchall()
            df = {term: (n, n_title) for term, n, n_title in rows}
            self._df = df
        return df

    def _load(self, asin: str) -> Product | None:
        try:
            row = self._conn().execute("SELECT doc FROM products WHERE asin = ?", (asin,))
            row = row.fetchone()
            return None if row is None else json.loads(row[0])
        except (sqlite3.Error, ValueError) as e:
            raise self._damaged(e) from None

    def get(self, asin: str) -> Product | None:
        """The product (shared, cached: do not mutate it), or None for an unknown asin."""
        if not isinstance(asin, str):
            return None
        return self._get_cached(asin)

    def __getitem__(self, asin: str) -> Product:
        p = self.get(asin)
        if p is None:
            raise KeyError(f"no product {asin!r} in catalog {self.path.name}")
        return p

    def __len__(self) -> int:
        return self._len

    def __contains__(self, asin: object) -> bool:
        if not isinstance(asin, str):
            return False
        row = self._conn().execute("SELECT 1 FROM products WHERE asin = ?", (asin,)).fetchone()
        return row is not None

    def asins(self) -> Iterator[str]:
        """Every asin, in build order."""
        cur = self._conn().execute("SELECT asin FROM products ORDER BY id")
        for (a,) in cur:
            yield a

    def products(self) -> Iterator[Product]:
        """Every product, in build order (decoded afresh, not cached)."""
        cur = self._conn().execute("SELECT doc FROM products ORDER BY id")
        for (doc,) in cur:
            yield json.loads(doc)

    def categories(self) -> list[str]:
        return list(self.meta.get("categories", []))

    def title_nouns(self, title: str) -> tuple[str, ...]:
        """The reward's noun list of a product or goal name (``reward.title_nouns``): read from
        the file when it keeps one for ``title``, computed by that tagger (its versions equal
        the installed ones), else tagged now."""
        from webgym.shop import reward

        if self._nouns_table is None:
            tagger = self.meta.get("title_nouns_tagger")
            self._nouns_table = tagger is not None and tagger == reward.tagger_version()
        if self._nouns_table and isinstance(title, str):
            try:
                sql = "SELECT nouns FROM title_nouns WHERE title = ?"
                row = self._conn().execute(sql, (title,)).fetchone()
                if row is not None:
                    return tuple(json.loads(row[0]))
            except (sqlite3.Error, ValueError) as e:
                raise self._damaged(e) from None
        return reward.title_nouns(title)

    # tasks -----------------------------------------------------------------------------------

    def splits(self) -> dict[str, TaskSplit]:
        if self._splits is None:
            goals: dict[str, list[Goal]] = {}
            for name in self.meta.get("split_sizes", {}):
                goals[name] = []
            try:
                cur = self._conn().execute("SELECT split, doc FROM tasks ORDER BY split, position")
                for split, doc in cur:
                    goals.setdefault(split, []).append(json.loads(doc))
            except (sqlite3.Error, ValueError) as e:
                raise self._damaged(e) from None
            self._splits = {name: TaskSplit(name, tuple(g)) for name, g in goals.items()}
        return self._splits

    def split(self, name: str) -> TaskSplit:
        splits = self.splits()
        try:
            return splits[name]
        except KeyError:
            valid = ", ".join(sorted(splits)) or "none"
            if self.source == SYNTHETIC and OOD_SPLIT not in splits:
                valid += (
                    f", {OOD_SPLIT}; {OOD_SPLIT} is in its ood companion, opened when no catalog "
                    "file is named"
                )
            raise KeyError(
                f"no split {name!r} in catalog {self.path.name} (valid: {valid}){self._hint(name)}"
            ) from None

    def _hint(self, name: str) -> str:
        """Where a split this catalog lacks is found, if anywhere."""
        if name == OOD_SPLIT and self.source == "webshop":
            return (
                ": WebShop's data has no ood split (its train split covers every product "
                "type); the ood split is the embedded synthetic catalog's"
            )
        if name == OOD_SPLIT:
            return (
                ": the ood split is in the synthetic catalog's ood companion, which split "
                "'ood' opens when no catalog file is named (`webgym shop build` builds it)"
            )
        if self.source == SYNTHETIC_OOD:
            return (
                f": this is the ood companion of the synthetic catalog; split {name!r} is the "
                "embedded catalog's (name no catalog file)"
            )
        return ""

    def task(self, task_id: str) -> Goal:
        for split in self.splits().values():
            if task_id in split._by_id:
                return split._by_id[task_id]
        sizes = ", ".join(f"{n} ({s.size})" for n, s in self.splits().items()) or "none"
        raise KeyError(
            f"no task {task_id!r} in catalog {self.path.name}; ids look like 'test-0042'; "
            f"splits: {sizes}"
        )


# ----------------------------------------------------------------------------------------------
# Default catalog


def cache_dir() -> Path:
    """``$WEBGYM_CACHE_DIR``, else platformdirs' user cache dir for "webgym"."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("webgym"))


@functools.cache
def generator_fingerprint() -> str:
    """8 hex digits of the code that generates the embedded catalog (products, goals, this
    file's layout, the reward's title nouns): any change to it gets a new cache file instead of
    a stale one."""
    from webgym.shop import reward, synthetic, tasks

    digest = hashlib.sha256(str(SCHEMA_VERSION).encode())
    for module in (synthetic, tasks, reward, sys.modules[__name__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:8]


def default_catalog_path(
    cache_dir_: Path | None = None, *, n_products: int = 10_000, seed: int = 0, ood: bool = False
) -> Path:
    """The cache file of the embedded catalog (``ood``: of its ood companion)."""
    base = Path(cache_dir_) if cache_dir_ is not None else cache_dir()
    kind = SYNTHETIC_OOD if ood else SYNTHETIC
    name = f"catalog-{kind}-n{n_products}-s{seed}-v{SCHEMA_VERSION}-{generator_fingerprint()}"
    return base / f"{name}.sqlite"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (fcntl; a no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename still keeps files whole
        yield
        return
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _damaged_file(path: Path) -> bool:
    try:
        Catalog(path).close()
    except FileNotFoundError:
        return False
    except ValueError:
        return True
    return False


def default_catalog(
    cache_dir: Path | None = None,
    *,
    n_products: int = 10_000,
    seed: int = 0,
    rebuild_damaged: bool = False,
) -> Catalog:
    """The embedded synthetic catalog, built into the cache directory on first use.

    A damaged cached file is refused (``CatalogDamaged``); ``rebuild_damaged=True`` (what
    ``webgym shop build`` passes) builds it again instead."""

    def build(path: Path) -> None:
        from webgym.shop.synthetic import generate_products
        from webgym.shop.tasks import generate_goals

        products = generate_products(n_products, seed=seed)
        splits = generate_goals(products, seed=seed)
        meta = {"n_products": n_products, "seed": seed}
        build_catalog(products, splits, path, source=SYNTHETIC, meta=meta, title_nouns=True)

    path = default_catalog_path(cache_dir, n_products=n_products, seed=seed)
    return _cached(path, build, rebuild_damaged)


def ood_catalog(
    cache_dir: Path | None = None,
    *,
    n_products: int = 10_000,
    seed: int = 0,
    rebuild_damaged: bool = False,
) -> Catalog:
    """The ood companion of ``default_catalog(n_products=, seed=)``, built on first use: its
    products, then as many of each out-of-distribution type as it has of each of its own
    types on average (69 for 10,000), and the one split ``ood`` over those (500 tasks).

    The embedded catalog's products come first and unchanged, so an ood episode searches the
    same shop with new product types added: no word of theirs (but option values) is in the
    embedded products' text, so a search for an ood goal ranks ood products first."""

    def build(path: Path) -> None:
        from webgym.shop.synthetic import PRODUCT_TYPES, generate_ood_products, generate_products
        from webgym.shop.tasks import generate_ood_goals

        products = generate_products(n_products, seed=seed)
        per_type = max(2, round(n_products / len(PRODUCT_TYPES)))
        ood = generate_ood_products(
            per_type, seed=seed, exclude_asins=[p["asin"] for p in products]
        )
        split = generate_ood_goals(ood, seed=seed)
        meta = {"n_products": n_products, "seed": seed, "ood_products": len(ood)}
        build_catalog(
            products + ood,
            {OOD_SPLIT: split},
            path,
            source=SYNTHETIC_OOD,
            meta=meta,
            title_nouns=True,
        )

    path = default_catalog_path(cache_dir, n_products=n_products, seed=seed, ood=True)
    return _cached(path, build, rebuild_damaged)


def _cached(path: Path, build: Any, rebuild_damaged: bool) -> Catalog:
    """The catalog at ``path``, built by ``build(path)`` first when it is missing (or damaged,
    with ``rebuild_damaged``); one process builds it while the others wait."""
    if not path.is_file() or (rebuild_damaged and _damaged_file(path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(path.with_name(path.name + ".lock")):
            # another process may have built it while we waited
            if not path.is_file() or (rebuild_damaged and _damaged_file(path)):
                build(path)
    return Catalog.open(path)


def open_catalog(path: Path | str | None = None, *, split: str | None = None) -> Catalog:
    """Open ``path``, else ``$WEBGYM_CATALOG``, else the embedded catalog that holds
    ``split``: the ood companion (``ood_catalog``) for ``"ood"``, the synthetic catalog for
    any other split (or none). A named file is opened whatever the split."""
    if path is None or str(path) == "":
        path = os.environ.get(CATALOG_ENV) or None
    if path is None:
        return ood_catalog() if split == OOD_SPLIT else default_catalog()
    return Catalog.open(Path(path).expanduser())
