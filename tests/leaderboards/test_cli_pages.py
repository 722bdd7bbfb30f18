"""The submit / leaderboard / view commands, and their pages opened in a real Chromium."""

from __future__ import annotations

import json
import urllib.request

import pytest
from typer.testing import CliRunner

from tests.fakerun import make_run, read_json, write_json
from webgym_leaderboards.cli import app
from webgym_leaderboards.store import LeaderboardStore
from webgym_leaderboards.validate import validate_run
from webgym_leaderboards.viewer import serve_in_thread

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
    # the chart: a Score bar and a success-rate bar per entry, in rank order, to scale
    bars = page.locator("svg.scores g.bar-row")
    assert bars.locator("text.name").all_text_contents() == ["1. oracle", "2. rule", "3. random"]
    widths = [
        float(w)
        for w in bars.locator("rect.score").evaluate_all("r => r.map(x => x.getAttribute('width'))")
    ]
    assert widths == [420 * 0.875, 420 * 0.5, 420 * 0.075]
    srs = bars.locator("rect.sr").evaluate_all("r => r.map(x => x.getAttribute('width'))")
    assert [float(w) for w in srs] == [420 * 0.75, 420 * 0.25, 0.0]  # rewards of exactly 1
    assert bars.nth(0).locator("text.value").all_text_contents() == ["87.5", "75.0%"]
    box = page.locator("svg.scores").bounding_box()
    assert box["width"] == 720 and box["height"] == 28 + 3 * 34 + 20
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
    from webgym_leaderboards.render import leaderboard_html

    run = make_run(
        tmp_path, test_split, rewards=[1.0], agent="<script>x</script>[bold]", name="odd"
    )
    entry = store.add(validate_run(run, {"test": test_split}).entry())
    html = leaderboard_html([entry], split="test")
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    assert '<text class="name" x="192" y="45" text-anchor="end">1. &lt;script&gt;x' in html
    monkeypatch.setenv("COLUMNS", "200")
    result = invoke("leaderboard", "--db", str(store.path))
    assert "<script>x</script>[bold]" in result.output  # printed verbatim, not as markup


# ---------------------------------------------------------------------------------------------
# What the agent saw and why it acted (observations.jsonl, a step's decision)


def episode_records(run, task) -> tuple[list[dict], list[dict]]:
    folder = run / "episodes" / task
    steps = [json.loads(x) for x in (folder / "steps.jsonl").read_text().splitlines()]
    pages = [json.loads(x) for x in (folder / "observations.jsonl").read_text().splitlines()]
    return steps, pages


def write_records(run, task, steps, pages) -> None:
    folder = run / "episodes" / task
    (folder / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (folder / "observations.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pages))


def test_view_of_a_text_run_shows_the_pages_and_the_reasons(rule_run, page, artifacts_dir):
    task = "test-0004"
    steps, pages = episode_records(rule_run, task)
    steps[1]["decision"] = {  # as a policy records it: its likeliest candidates
        "candidates": [
            {"action": steps[1]["action"], "prob": 0.625},
            {"action": "click('next_page')", "prob": 0.25},
        ],
        "value": 0.4,
    }
    steps[2]["decision"] = {"text": "I'd pick the khaki one.\nclick('khaki')"}
    write_records(rule_run, task, steps, pages)
    out = rule_run / "trace.html"
    assert invoke("view", str(rule_run), "--episode", task, "--out", str(out)).exit_code == 0

    page.goto(out.as_uri())
    sections = page.locator("section.step")
    assert sections.count() == len(steps) + 1  # the reset's page, then every step
    assert page.locator(".noshot").count() == 0
    shown = sections.locator("pre.page").all_inner_texts()
    want = ["\n".join(x.strip() for x in p["text"].split("[SEP]")).strip() for p in pages]
    assert [s.strip() for s in shown] == want
    assert "page the agent saw after the reset" in sections.nth(0).inner_text()
    reasons = sections.locator(".why .reason-text").all_inner_texts()
    assert reasons[0] == "search page: search the instruction"
    assert len(reasons) == len(steps) - 2  # two steps explained otherwise, above
    rows = sections.nth(2).locator(".why tr.candidate")
    assert rows.locator("td.prob").all_inner_texts() == ["62.5%", "25.0%"]
    assert rows.nth(0).get_attribute("class") == "candidate chosen"
    assert "taken" in rows.nth(0).inner_text() and "taken" not in rows.nth(1).inner_text()
    assert "value estimate 0.400" in sections.nth(2).inner_text()
    generated = sections.nth(3).locator(".why pre.generated").inner_text()
    assert generated == "I'd pick the khaki one.\nclick('khaki')"
    assert page.external_requests == []
    page.screenshot(path=str(artifacts_dir / "trace-viewer-pages.png"), full_page=True)


def test_view_escapes_page_texts_and_reasons(rule_run, tmp_path):
    """A run is anyone's text: markup, control sequences and bidirectional overrides in a page
    or a reason are shown as text (or removed), never obeyed; a page that is not its step's
    page says so; a decision that is not a mapping is left out."""
    task = "test-0001"
    steps, pages = episode_records(rule_run, task)
    pages[1]["text"] += " [SEP] <script>alert('page')</script>\u202etxt.exe\x1b]52;c;Zm9v\x07"
    steps[0]["decision"] = {
        "reason": "</div><script>alert('why')</script>",
        "candidates": [{"action": "<img src=x onerror=alert(1)>", "prob": 2.0}],
    }
    steps[1]["decision"] = ["not", "a", "mapping"]
    write_records(rule_run, task, steps, pages)
    out = tmp_path / "t.html"
    assert invoke("view", str(rule_run), "--episode", task, "--out", str(out)).exit_code == 0
    html = out.read_text()
    assert html.count("<script") == 1  # the viewer's own key handler
    assert "&lt;script&gt;alert(&#39;page&#39;)&lt;/script&gt;" in html
    assert "&lt;/div&gt;&lt;script&gt;alert(&#39;why&#39;)" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img src=x" not in html
    assert "\u202e" not in html and "\x1b" not in html and "Zm9v" not in html
    assert "txt.exe" in html
    assert html.count("is not the page of the step record") == 1  # the edited page, flagged
    assert 'style="width: 100.0px"' in html  # a probability above 1 draws a full bar, no more
    assert html.count('class="why"') == len(steps) - 1  # the list is no decision
