"""The trace viewer: one self-contained HTML page to step through the episodes of a run.

Per step: the action and why the agent took it (the step's ``decision``, where the agent gave
one: its reason, its likeliest candidates with their probabilities, or the text it generated);
what it led to: the page text (``observations.jsonl``; the reset's page first) and, when the run
kept screenshots, the screenshot (embedded as a base64 PNG when the file is a regular PNG file
inside the run: a symlink, a FIFO or another format is shown as the episode's problem, never
read), else, for a run that recorded neither, the observation digest and URL; the effect label
and distances; the reward; the error. A page text whose sha256 is not its step's
``obs_digest`` is shown marked as such. Everything a run holds is text for the page, never
markup: Jinja's autoescape, and control characters and bidirectional overrides removed
(``webgym.terminal.terminal_safe``).
Every step is its own section with an anchor, so the page works without JavaScript; a few lines
of inline script add keyboard navigation (j / k or the arrow keys). ``serve`` serves the pages on
127.0.0.1 with the standard library's http.server (one page per episode). Runs are read by
``webgym.runs.read_run``; what it could not read is shown on the episode it belongs to (only a
run without a readable manifest is refused).
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from webgym.runs import (
    CorruptRecord,
    EpisodeRecords,
    RunDir,
    RunProblem,
    RunRecords,
    decision_record,
    obs_digest,
    run_records,
    screenshot_path,
)
from webgym.terminal import terminal_safe
from webgym_leaderboards.render import templates
from webgym_leaderboards.validate import SubmissionRefused, file_refusal


@dataclass
class EpisodeTrace:
    task_id: str
    summary: dict[str, Any] | None  # None: the episode is not complete
    steps: list[dict[str, Any]] = field(default_factory=list)
    dir: Path | None = None
    problem: str | None = None  # a corrupt file, said in words
    instruction: str | None = None
    observations: dict[int, dict[str, Any]] = field(default_factory=dict)  # step -> record

    @property
    def anchor(self) -> str:
        return "ep-" + re.sub(r"[^A-Za-z0-9_-]", "_", self.task_id)


@dataclass
class RunTrace:
    run_dir: Path
    manifest: dict[str, Any]
    run_summary: dict[str, Any] | None
    episodes: list[EpisodeTrace]

    def episode(self, task_id: str) -> EpisodeTrace:
        for ep in self.episodes:
            if ep.task_id == task_id:
                return ep
        known = ", ".join(e.task_id for e in self.episodes[:10])
        raise KeyError(f"no episode {task_id!r} in run {self.run_dir} (episodes: {known} ...)")


def _file_problem(problem: RunProblem) -> str:
    """A file that could not be read, in words: an unsafe one as the reader says, else
    ``corrupt file ...``."""
    return problem.message if problem.kind == "unsafe" else f"corrupt file {problem.message}"


def load_run(run: Path | str | RunRecords, goals: Mapping[str, Any] | None = None) -> RunTrace:
    """Read a run for viewing (``webgym.runs.read_run``; ``run`` may be its records, read
    already): lenient, incomplete episodes and files that cannot be read are shown as such,
    each episode's problems in words on it. Only a run without a readable manifest is refused
    (``SubmissionRefused``).

    ``goals``: optional ``{task_id: goal}`` to show each episode's instruction.
    """
    records = run_records(run)
    if records.manifest is None:
        problem = records.manifest_problem
        if problem.kind == "missing":
            raise SubmissionRefused(f"{records.path} has no manifest.json: not a run directory")
        raise SubmissionRefused(_file_problem(problem))
    episodes = []
    # folders the manifest does not list (should not happen) come last
    for task_id in [*records.task_ids, *records.unlisted]:
        goal = (goals or {}).get(task_id) or {}
        instruction = goal.get("instruction_text") if isinstance(goal, Mapping) else None
        episodes.append(_episode_trace(records, records.by_task[task_id], instruction))
    return RunTrace(records.path, records.manifest, records.summary, episodes)


def _episode_trace(
    records: RunRecords, ep: EpisodeRecords, instruction: str | None
) -> EpisodeTrace:
    """One episode for the page, with its problems in one line: a summary that cannot be read,
    a steps.jsonl that cannot be read whole (its steps are then not shown), what is not a
    regular file inside its folder, screenshots that are no PNG files, page texts that cannot
    be read."""
    if ep.state in ("unnamed", "damaged"):  # nothing in it is read
        return EpisodeTrace(ep.task_id, None, [], None, ep.problems[0].message)
    problem = None
    if ep.state == "corrupt" and ep.summary is None:  # a summary that is no JSON object
        problem = _file_problem(ep.problems[0])
    steps = ep.steps
    if ep.steps_problem is not None and ep.steps_problem.kind != "missing":
        steps, problem = [], problem or file_refusal(ep.steps_problem)
    unsafe = [p for p in records.unsafe if p.task_id == ep.task_id and p.path != ep.path]
    unsafe += ep.screenshot_problems
    if ep.observations_problem is not None:
        unsafe.append(ep.observations_problem)
    if unsafe:
        problem = "; ".join(([problem] if problem else []) + [p.message for p in unsafe])
    return EpisodeTrace(
        ep.task_id,
        ep.summary,
        steps,
        ep.path,
        problem,
        instruction,
        {
            page["step"]: page
            for page in ep.observations
            if isinstance(page.get("step"), int) and isinstance(page.get("text"), str)
        },
    )


def _png_data_uri(run_dir: Path, path: Path) -> str | None:
    """The screenshot as a data URI, read through ``RunDir.read_png``: only a regular PNG file
    inside the run is embedded (a symlink, a FIFO, anything else is not: the episode's
    problem says why)."""
    try:
        data = RunDir(run_dir).read_png(path)
    except (OSError, CorruptRecord):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _page(ep: EpisodeTrace, step: int, digest: Any = None) -> dict[str, Any] | None:
    """The page text recorded after ``step`` (0: the reset) for the template: its lines (the
    text split at WebShop's ``[SEP]``, made safe), whether it was cut, and ``mismatch`` when
    it does not hash to ``digest`` (the step's ``obs_digest``); None when none was recorded."""
    page = ep.observations.get(step)
    if page is None:
        return None
    text = page["text"]
    lines = [terminal_safe(line).strip() for line in text.split("[SEP]")]
    cut = bool(page.get("cut"))
    return {
        "lines": [line for line in lines if line],
        "cut": cut,
        "mismatch": digest is not None and not cut and obs_digest(page) != digest,
    }


def _why(decision: Any, action: Any) -> dict[str, Any] | None:
    """A step's ``decision`` for the template (bounded and shaped again by
    ``webgym.runs.decision_record``: the file may hold anything), its strings made safe; the
    candidates with their probability in percent and whether each is the action taken."""
    if not isinstance(decision, Mapping):
        return None
    d = decision_record(decision)
    if not d:
        return None
    cands = []
    for c in d.get("candidates", []):
        prob = c["prob"]
        cands.append(
            {
                "action": terminal_safe(c["action"]),
                "prob": "-" if prob is None else f"{100 * prob:.1f}%",
                "width": 0.0 if prob is None else round(100 * min(max(prob, 0.0), 1.0), 1),
                "chosen": c["action"] == action,
            }
        )
    return {
        "reason": terminal_safe(d["reason"]) if "reason" in d else None,
        "text": terminal_safe(d["text"], newlines=True) if "text" in d else None,
        "candidates": cands,
        "value": _fmt(d.get("value")),
        "has_value": "value" in d,
    }


def _step_views(ep: EpisodeTrace) -> list[dict[str, Any]]:
    views = []
    run_dir = ep.dir.parent.parent if ep.dir is not None else None
    if ep.dir is not None:
        first = _png_data_uri(run_dir, screenshot_path(ep.dir, 0))
        page = _page(ep, 0)
        if first or page:
            views.append(
                {
                    "id": f"{ep.anchor}-step-0",
                    "title": "After reset",
                    "reset": True,
                    "img": first,
                    "page": page,
                    "why": None,
                    "step": {},
                }
            )
    for st in ep.steps:
        n = st.get("step")
        img = (
            _png_data_uri(run_dir, screenshot_path(ep.dir, int(n)))
            if ep.dir and isinstance(n, int)
            else None
        )
        views.append(
            {
                "id": f"{ep.anchor}-step-{n}",
                "title": f"Step {n}",
                "reset": False,
                "img": img,
                "page": _page(ep, n, st.get("obs_digest")) if isinstance(n, int) else None,
                "why": _why(st.get("decision"), st.get("action")),
                "step": st,
                "reward": _fmt(st.get("reward")),
                "text_distance": _fmt(st.get("text_distance")),
                "pixel_distance": _fmt(st.get("pixel_distance"), 2),
                "elapsed": _fmt(st.get("elapsed_s")),
            }
        )
    for i, v in enumerate(views):
        v["prev"] = views[i - 1]["id"] if i else None
        v["next"] = views[i + 1]["id"] if i + 1 < len(views) else None
    return views


def render_trace(
    run: RunTrace,
    episodes: list[str] | None = None,
    *,
    episode_href: Callable[[EpisodeTrace], str | None] | None = None,
) -> str:
    """The HTML page: the run's episode list and the steps of ``episodes`` (default: all).

    ``episode_href`` gives the link of an episode in the list (default: its anchor when the page
    shows it, else no link).
    """
    shown = [run.episode(t) for t in episodes] if episodes is not None else list(run.episodes)
    shown_ids = {e.task_id for e in shown}

    def default_href(ep: EpisodeTrace) -> str | None:
        return "#" + ep.anchor if ep.task_id in shown_ids else None

    href = episode_href or default_href
    listing = [
        {"ep": ep, "href": href(ep), "shown": ep.task_id in shown_ids, "reward": _reward(ep)}
        for ep in run.episodes
    ]
    return (
        templates()
        .get_template("trace.html.j2")
        .render(
            run=run,
            m=run.manifest,
            s=run.run_summary or {},
            listing=listing,
            shown=[{"ep": ep, "steps": _step_views(ep), "reward": _reward(ep)} for ep in shown],
        )
    )


def _reward(ep: EpisodeTrace) -> str:
    if ep.summary is None or ep.summary.get("reward") is None:
        return "-"
    return f"{float(ep.summary['reward']):.3f}"


def write_trace(
    run_dir: Path | str | RunTrace,
    out: Path | str,
    episode: str | None = None,
    goals: Mapping[str, Any] | None = None,
) -> Path:
    """Write the viewer page for ``episode`` (default: every episode) to ``out``; ``run_dir``
    may be the run as :func:`load_run` read it."""
    run = run_dir if isinstance(run_dir, RunTrace) else load_run(run_dir, goals)
    html = render_trace(run, [episode] if episode else None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def make_server(
    run_dir: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    goals: Mapping[str, Any] | None = None,
) -> ThreadingHTTPServer:
    """An http.server serving ``/`` (first episode) and ``/episode/<task_id>`` pages.

    The run is re-read on each request, so a run still being written can be followed.
    """
    run_dir = Path(run_dir)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path = self.path.split("?", 1)[0]
            try:
                run = load_run(run_dir, goals)
                if path in ("/", "/index.html"):
                    target = run.episodes[0].task_id if run.episodes else None
                elif path.startswith("/episode/"):
                    target = unquote(path[len("/episode/") :])
                    run.episode(target)
                else:
                    return self._send(404, f"not found: {path}")
                html = render_trace(
                    run,
                    [target] if target else [],
                    episode_href=lambda ep: "/episode/" + quote(ep.task_id),
                )
            except KeyError as exc:
                return self._send(404, str(exc))
            except SubmissionRefused as exc:
                return self._send(500, exc.reason)
            self._send(200, html, "text/html; charset=utf-8")

        def _send(self, code: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(run_dir: Path | str, **kwargs: Any) -> tuple[ThreadingHTTPServer, str]:
    """Start ``make_server`` on a daemon thread; returns the server and its base URL."""
    server = make_server(run_dir, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/"
