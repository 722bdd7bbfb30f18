"""A run records WebGym's own commit (``webgym.runs.webgym_commit``): HEAD of WebGym's source
tree when that is a git checkout of WebGym, else the commit pip recorded installing it from git,
else none; never the repository of the current directory, nor one an install sits inside. Real
git repositories in tmp folders, and a real ``.dist-info`` folder on ``sys.path``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from webgym.runs import collect_provenance, is_webgym_checkout, webgym_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def repo(path: Path, files: dict[str, str]) -> str:
    """A git repository at ``path`` holding ``files``, committed; returns its HEAD."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "c")
    return git(path, "rev-parse", "HEAD")


WEBGYM_TREE = {
    "pyproject.toml": '[project]\nname = "webgym-shopping"\n',
    "webgym/__init__.py": "",
}


def test_a_checkout_of_webgym_gives_its_head_and_dirty_flag(tmp_path):
    head = repo(tmp_path / "src", WEBGYM_TREE)
    assert is_webgym_checkout(tmp_path / "src")
    assert webgym_commit(root=tmp_path / "src") == (head, False)
    (tmp_path / "src" / "webgym" / "__init__.py").write_text("x = 1\n")
    assert webgym_commit(root=tmp_path / "src") == (head, True)


def test_another_project_or_an_install_inside_a_repository_gives_no_commit(tmp_path):
    other = {**WEBGYM_TREE, "pyproject.toml": '[project]\nname = "someone-else"\n'}
    repo(tmp_path / "other", other)
    assert not is_webgym_checkout(tmp_path / "other")
    assert webgym_commit(root=tmp_path / "other") == (None, None)
    # a user's project whose virtualenv holds an installed (non-editable) webgym
    repo(tmp_path / "project", {"README": "mine\n"})
    site = tmp_path / "project" / "venv" / "site-packages"
    for name, text in WEBGYM_TREE.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    assert is_webgym_checkout(site)  # it looks like WebGym, but the checkout is the user's
    assert webgym_commit(root=site) == (None, None)


def test_git_environment_variables_do_not_redirect_the_lookup(tmp_path, monkeypatch):
    head = repo(tmp_path / "src", WEBGYM_TREE)
    other = repo(tmp_path / "user", {"a": "b"})
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "user" / ".git"))
    assert webgym_commit(root=tmp_path / "src") == (head, False) and head != other


def test_the_current_directory_is_never_asked(tmp_path, monkeypatch):
    """A run started inside the user's own repository records WebGym's commit, not theirs."""
    theirs = repo(tmp_path / "user", {"a": "b"})
    monkeypatch.chdir(tmp_path / "user")
    prov = collect_provenance("local")
    assert prov["git_hash"] != theirs
    assert (prov["git_hash"], prov["git_dirty"]) == webgym_commit()
    assert prov["package_versions"]["webgym"]


def test_an_install_from_git_gives_the_commit_pip_recorded(tmp_path, monkeypatch):
    """No checkout: the commit of ``direct_url.json`` (PEP 610) in WebGym's dist-info, as
    ``pip install git+https://...`` writes it; without one, no commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    info = tmp_path / "site" / "webgym_shopping-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: webgym-shopping\nVersion: 0.1.0\n")
    direct = {
        "url": "https://example.com/webgym.git",
        "vcs_info": {"vcs": "git", "commit_id": commit},
    }
    (info / "direct_url.json").write_text(json.dumps(direct))
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])
    wheel_root = tmp_path / "not-a-checkout"
    wheel_root.mkdir()
    assert webgym_commit(root=wheel_root) == (commit, False)
    (info / "direct_url.json").write_text(json.dumps({"url": "file:///x.whl", "archive_info": {}}))
    assert webgym_commit(root=wheel_root) == (None, None)
