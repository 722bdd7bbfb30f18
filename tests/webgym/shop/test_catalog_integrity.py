"""A catalog file damaged after its build is refused with the command that rebuilds it, never
served as wrong products; builds leave no temporary files.

Every damage is done to a COPY of the embedded catalog in tmp_path (other processes use the
cached file)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from webgym.shop import catalog as catalog_mod
from webgym.shop.catalog import Catalog, CatalogDamaged, build_catalog

REBUILD = "webgym shop build"


@pytest.fixture()
def copy(catalog, tmp_path) -> Path:
    path = tmp_path / "copy.sqlite"
    shutil.copyfile(catalog.path, path)
    return path


def overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_an_intact_copy_opens_with_the_same_content_hash(catalog, copy):
    with Catalog(copy) as c:
        assert c.content_hash == catalog.content_hash and len(c.content_hash) == 16
        assert c.search("shampoo") == catalog.search("shampoo")


@pytest.mark.parametrize("where", [0.2, 0.5, 0.8, 0.999])
def test_bytes_overwritten_anywhere_are_refused_with_the_rebuild_command(copy, where):
    offset = int(copy.stat().st_size * where)
    overwrite(copy, offset, b"\x00" * 16)
    with pytest.raises(CatalogDamaged, match=REBUILD):
        Catalog(copy)


def test_a_damaged_header_or_a_truncated_file_is_a_message(copy, tmp_path):
    overwrite(copy, 0, b"garbage garbage!")
    with pytest.raises(ValueError, match=REBUILD):
        Catalog(copy)
    cut = tmp_path / "cut.sqlite"
    shutil.copyfile(copy, cut)
    os.truncate(cut, cut.stat().st_size // 2)
    with pytest.raises(ValueError, match=REBUILD):
        Catalog(cut)


def test_a_read_error_after_open_is_raised_not_an_empty_result(copy):
    c = Catalog(copy)
    try:
        assert c.search("shampoo")
        overwrite(copy, 8192 * 2, os.urandom(copy.stat().st_size - 8192 * 3))
        with pytest.raises(CatalogDamaged, match=REBUILD):
            for word in ("dog leash", "red shoes", "soap", "lamp", "coffee", "phone case"):
                c.search(word)
            for asin in list(c.asins()):  # the products table, page by page
                c.get(asin)
    except CatalogDamaged:
        pytest.fail("the damage was found before it was made")
    finally:
        c.close()


def test_the_cli_says_what_is_wrong_without_a_traceback(copy):
    from webgym.cli import app

    overwrite(copy, copy.stat().st_size // 2, b"\xff" * 32)
    result = CliRunner().invoke(app, ["shop", "tasks", "--catalog", str(copy)])
    assert result.exit_code == 1
    assert REBUILD in result.output and "Traceback" not in result.output


def test_a_run_cannot_be_planned_on_a_damaged_catalog(copy, monkeypatch, tmp_path):
    from webgym_benchmarks.runner import PlanError, plan_run

    overwrite(copy, copy.stat().st_size // 3, b"\x01" * 8)
    monkeypatch.setenv("WEBGYM_CATALOG", str(copy))
    with pytest.raises(PlanError, match=REBUILD) as err:
        plan_run(agent="rule", split="test", episodes=1, mode="text", out=tmp_path / "run")
    assert err.value.code == 1


def test_the_manifest_records_the_catalog_content_hash(catalog, tmp_path):
    from webgym_benchmarks.runner import plan_run

    plan = plan_run(agent="rule", split="test", episodes=1, mode="text", out=tmp_path / "r")
    assert plan.manifest["catalog"]["content_hash"] == catalog.content_hash


def _products(n: int) -> list[dict]:
    from webgym.shop.synthetic import generate_products

    return generate_products(n, seed=3)


def test_the_content_hash_follows_the_content_not_the_build(tmp_path):
    ps = _products(50)
    a = build_catalog(ps, {}, tmp_path / "a.sqlite", source="t")
    b = build_catalog(ps, {}, tmp_path / "b.sqlite", source="t")
    changed = [dict(p) for p in ps]
    changed[7] = {**changed[7], "Title": changed[7]["Title"] + " (changed)"}
    c = build_catalog(changed, {}, tmp_path / "c.sqlite", source="t")
    with Catalog(a) as ca, Catalog(b) as cb, Catalog(c) as cc:
        assert ca.content_hash == cb.content_hash != cc.content_hash


def test_webgym_shop_build_rebuilds_a_damaged_cached_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBGYM_CACHE_DIR", str(tmp_path))
    path = catalog_mod.default_catalog_path(n_products=200, seed=2)
    catalog_mod.default_catalog(n_products=200, seed=2).close()
    overwrite(path, path.stat().st_size // 2, b"\x00" * 64)
    with pytest.raises(CatalogDamaged, match="--n-products 200 --seed 2"):
        catalog_mod.default_catalog(n_products=200, seed=2)
    with catalog_mod.default_catalog(n_products=200, seed=2, rebuild_damaged=True) as c:
        assert len(c) == 200


_BUILD = """
import signal, sys, time
# a shell's background job inherits SIGINT ignored, and Python then installs no handler
signal.signal(signal.SIGINT, signal.default_int_handler)
from webgym.shop.catalog import CatalogBuilder
from webgym.shop.synthetic import generate_products
products = generate_products(400, seed=1)
with CatalogBuilder(sys.argv[1], source="t") as b:
    print("building", flush=True)
    while True:
        b.add_products([{**p, "asin": p["asin"] + str(time.monotonic_ns())} for p in products])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_build_leaves_no_temporary_file(tmp_path, sig):
    target = tmp_path / "out.sqlite"
    proc = subprocess.Popen(
        [sys.executable, "-c", _BUILD, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "building"
    time.sleep(0.3)
    assert list(tmp_path.glob(".out.sqlite.*.tmp"))  # it is writing its temporary file
    proc.send_signal(sig)
    proc.wait(timeout=30)
    if sig == signal.SIGKILL:  # nothing runs in a killed process: the next build cleans up
        assert list(tmp_path.glob(".out.sqlite.*.tmp"))
        build_catalog(_products(5), {}, target, source="t")
    assert list(tmp_path.glob(".out.sqlite.*.tmp")) == []
    assert target.is_file() == (sig == signal.SIGKILL)
