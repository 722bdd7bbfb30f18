"""The submit / leaderboard / view commands, and their pages opened in a real Chromium."""

from __future__ import annotations

import json
import urllib.request

import pytest
from typer.testing import CliRunner

from leaderboards.cli import app
from leaderboards.store import LeaderboardStore
from leaderboards.validate import validate_run
from leaderboards.viewer import serve_in_thread
from tests.leaderboards.fakerun import make_run, read_json, write_json

runner = CliRunner()

BOARD = {
    "oracle": [1.0, 1.0, 1.0, 0.5],
    "rule": [1.0, 0.5, 0.0, 0.5],
    "random": [0.0, 0.1, 0.0, 0.2],
}


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def board(tmp_path, db_path, test_split, known_splits):
    """Three file-checked fake runs on the board (the rendering does not depend on how the
    entries got there; ``submit`` replays real runs, test_verify.py); their folders by agent."""
    runs = {}
    with LeaderboardStore(db_path) as store:
        for agent, rewards in BOARD.items():
            runs[agent] = make_run(tmp_path, test_split, rewards=rewards, agent=agent)
            store.add(validate_run(runs[agent], known_splits).entry())
    return runs


def test_submit_prints_rank_and_refusals_exit_1(tmp_path, db_path, test_split, rule_run):
    result = invoke("submit", str(rule_run), "--db", str(db_path))
    assert result.exit_code == 0, result.output
    assert "rank 1 of 1 on test[:6]" in result.output
    score = read_json(rule_run / "summary.json")["score"]
    assert f"Score {score:.1f}" in result.output

    again = invoke("submit", str(rule_run), "--db", str(db_path))
    assert again.exit_code == 1
    assert "refused" in again.output and "duplicate" in again.output

    other = make_run(tmp_path, test_split, rewards=[0.5], split_hash="0000000000000000")
    result = invoke("submit", str(other), "--db", str(db_path))
    assert result.exit_code == 1
    assert "version 0000000000000000" in result.output and test_split.hash in result.output


def test_db_location_from_env(tmp_path, monkeypatch, rule_run):
    path = tmp_path / "env-board.sqlite"
    monkeypatch.setenv("WEBGYM_LEADERBOARD", str(path))
    assert invoke("submit", str(rule_run)).exit_code == 0
    assert path.is_file()
    assert "rule" in invoke("leaderboard").output


def test_leaderboard_table_is_ranked(board, db_path):
    result = invoke("leaderboard", "--split", "test", "--db", str(db_path))
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if any(a in ln for a in BOARD)]
    assert [next(a for a in BOARD if a in ln) for ln in lines] == ["oracle", "rule", "random"]
    assert "87.5 ± 12.5" in result.output
    assert "01234567" in result.output  # short git hash
    empty = invoke("leaderboard", "--split", "validation", "--db", str(db_path))
    assert "no entries" in empty.output


def test_leaderboard_html_in_chromium(board, db_path, tmp_path, page, artifacts_dir):
    html = tmp_path / "board.html"
    result = invoke("leaderboard", "--db", str(db_path), "--html", str(html))
    assert result.exit_code == 0, result.output
    text = html.read_text()
    assert "<link" not in text and "<script" not in text and "http" not in text.split("<body")[0]

    page.goto(html.as_uri())
    rows = page.locator("#leaderboard tbody tr.entry")
    assert rows.count() == 3
    assert rows.locator("td.rank").all_inner_texts() == ["1", "2", "3"]
    assert rows.locator("td.agent").all_inner_texts() == ["oracle", "rule", "random"]
    assert rows.nth(0).locator("td.score").inner_text() == "87.5 ± 12.5"
    assert rows.nth(0).locator("td.git").inner_text() == "01234567"
    assert rows.nth(0).locator("td.checkpoint").inner_text() == "-"
    assert page.external_requests == []
    page.screenshot(path=str(artifacts_dir / "leaderboard.png"), full_page=True)


def test_view_page_with_screenshots_in_chromium(tmp_path, test_split, page, artifacts_dir):
    run = make_run(tmp_path, test_split, rewards=[1.0, 0.5], screenshots=True)
    out = tmp_path / "trace.html"
    result = invoke("view", str(run), "--out", str(out))
    assert result.exit_code == 0, result.output

    page.goto(out.as_uri())
    tasks = test_split.task_ids[:2]
    assert page.locator("#episodes tr.episode-row").count() == 2
    first = page.locator(f"section.episode[data-task-id='{tasks[0]}']")
    steps = first.locator("section.step")
    n_steps = read_json(run / "episodes" / tasks[0] / "summary.json")["n_steps"]
    assert steps.count() == n_steps + 1  # the reset screenshot, then one section per step
    assert steps.nth(1).locator(".action-text").inner_text() == f"search[{tasks[0]} red shoes]"
    assert steps.last.locator(".action-text").inner_text() == "click[Buy Now]"
    assert steps.last.locator("dd.reward").inner_text().startswith("1.000")
    img = steps.nth(1).locator("img")
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    assert img.evaluate("i => i.complete && i.naturalWidth") == 320
    assert first.locator("dd.error").first.inner_text() == "no clickable element 'Not There'"
    instruction = test_split.task(tasks[0])["instruction_text"]  # looked up in the catalog
    assert instruction in first.locator("p.instruction").inner_text()
    assert page.external_requests == []

    # the optional keys move between steps; the anchors work without them
    page.keyboard.press("j")
    page.keyboard.press("j")
    assert page.evaluate("location.hash") == f"#ep-{tasks[0]}-step-1"
    page.screenshot(path=str(artifacts_dir / "trace-viewer.png"))


def test_view_single_episode_without_screenshots(tmp_path, test_split, page, artifacts_dir):
    run = make_run(tmp_path, test_split, rewards=[1.0, 0.5, 0.0])
    task = test_split.task_ids[1]
    result = invoke("view", str(run), "--episode", task)
    assert result.exit_code == 0, result.output
    out = run / f"trace-{task}.html"
    page.goto(out.as_uri())
    assert page.locator("section.episode").count() == 1
    assert page.locator("section.step img").count() == 0
    steps = [
        json.loads(x) for x in (run / "episodes" / task / "steps.jsonl").read_text().splitlines()
    ]
    assert page.locator("section.step").count() == len(steps)
    shown = page.locator("section.step .noshot code").first.inner_text()
    assert shown == steps[0]["url"]
    assert steps[0]["obs_digest"] in page.locator("section.step .noshot").first.inner_text()
    page.screenshot(path=str(artifacts_dir / "trace-viewer-text.png"))

    assert invoke("view", str(run), "--episode", "test-9999").exit_code == 1


def test_view_serve(tmp_path, test_split, page):
    run = make_run(tmp_path, test_split, rewards=[1.0, 0.0])
    server, url = serve_in_thread(run)
    try:
        assert url.startswith("http://127.0.0.1:")
        page.goto(url)
        assert page.locator("section.episode").count() == 1
        page.locator("#episodes a").nth(1).click()
        page.wait_for_url("**/episode/" + test_split.task_ids[1])
        assert (
            page.locator("section.episode").get_attribute("data-task-id")
            == (test_split.task_ids[1])
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + "episode/nope")
        assert info.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_view_tolerates_incomplete_and_corrupt_episodes(tmp_path, test_split):
    run = make_run(tmp_path, test_split, rewards=[1.0, 0.5])
    tasks = test_split.task_ids[:2]
    (run / "episodes" / tasks[0] / "summary.json").unlink()
    write_json(run / "episodes" / tasks[1] / "summary.json", {"x": 1})
    (run / "episodes" / tasks[1] / "steps.jsonl").write_text("{torn")
    out = tmp_path / "t.html"
    assert invoke("view", str(run), "--out", str(out)).exit_code == 0
    text = out.read_text()
    assert "incomplete" in text and "corrupt episode file" in text


def test_pages_escape_what_runs_contain(tmp_path, test_split, store, monkeypatch):
    from leaderboards.render import leaderboard_html

    run = make_run(
        tmp_path, test_split, rewards=[1.0], agent="<script>x</script>[bold]", name="odd"
    )
    entry = store.add(validate_run(run, {"test": test_split}).entry())
    html = leaderboard_html([entry], split="test")
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    monkeypatch.setenv("COLUMNS", "200")
    result = invoke("leaderboard", "--db", str(store.path))
    assert "<script>x</script>[bold]" in result.output  # printed verbatim, not as markup
