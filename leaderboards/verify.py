"""Verification by replay: a run's records must be what the shop does with its actions.

``validate_run`` (leaderboards/validate.py) checks that a run's files agree with each other;
a forger who edits them consistently passes it. ``verify_run`` then replays every episode's
recorded actions in the browserless text twin of the env (``WebGym-ShoppingText-v0``,
deterministic, about 1 ms a step: ``webgym.replay``), from its task and its recorded seed, on
this catalog's split, and refuses the run at the first step whose record the replay does not
reproduce, naming the episode and the step. Per step (``webgym.replay.step_differences``): the
observation digest, the reward, the end flags, the action error, the URL, the text distance,
and the effect label (text runs; in browser runs the pixel label of the recorded pixel
distance). Per episode: it ends where the record ends, with the recorded reward, purchase
(``purchased_asin``, ``reward_info``) and end flags, and the page texts it recorded
(``observations.jsonl``, the reset's included) are the replayed pages. Browser-mode runs
replay here too (both modes serve the same HTML); their pixels are not replayed (see "What a
replay cannot show").

An error episode (every attempt failed on machine trouble) counts as reward 0 whatever it
holds; its steps must still replay up to where its last attempt stopped. The step on which a
browser failed is recorded ``truncated`` with the error and no reward, and a text replay does
not fail there: only that last step may differ.

What a replay cannot show (README, "The local leaderboard", says the same):

* who chose the actions: a replay proves that the recorded actions lead to the recorded pages
  and reward, not that the named agent (or checkpoint) produced them;
* pixels: a browser run's screenshots and pixel distances are taken as recorded, so a text
  run relabelled as a browser run is caught (it records no pixel distance, and no screenshots)
  unless the forger also invents pixel distances consistent with the labels;
* timings (``elapsed_s``, ``timings``, wall time) and the retry count (``attempts``).

Imports ``webgym`` (the env, the replay, the record format) and ``webgym_leaderboards.validate``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webgym.replay import iter_replay, step_differences, text_replayable
from webgym.runs import RunRecords, observation_matches, screenshot_path
from webgym_leaderboards.validate import (
    Episode,
    SubmissionRefused,
    ValidatedRun,
    machine_failure,
    validate_run,
)

__all__ = ["VerifiedRun", "replay_run", "verify_run"]


@dataclass(frozen=True)
class VerifiedRun:
    """A run that passed validation and replay; ``run`` is the validated run."""

    run: ValidatedRun
    n_steps: int  # steps replayed
    replay_s: float  # wall time of the replay


Progress = Callable[[int, int], None]  # (episodes replayed, episodes in all)


def verify_run(
    run_dir: Path | str | RunRecords,
    known_splits: Any,
    *,
    catalog: Path | str | None = None,
    on_episode: Progress | None = None,
) -> VerifiedRun:
    """Validate ``run_dir`` (``validate_run``: a path, or the run's records when they were read
    already) and replay every episode of it in text mode on
    ``catalog`` (a catalog file; default ``$WEBGYM_CATALOG``, else the embedded one that holds
    the run's split: it must be the catalog ``known_splits`` came from). Raises
    ``SubmissionRefused`` with the reason. ``on_episode(done, total)`` hears of each episode
    replayed (a progress bar)."""
    run = validate_run(run_dir, known_splits)
    t0 = time.perf_counter()
    n_steps = replay_run(run, catalog=catalog, on_episode=on_episode)
    return VerifiedRun(run, n_steps, time.perf_counter() - t0)


def replay_run(
    run: ValidatedRun,
    *,
    catalog: Path | str | None = None,
    on_episode: Progress | None = None,
) -> int:
    """Replay every episode of a validated run; returns the number of steps replayed.
    ``on_episode(done, total)`` is called after each episode that replayed."""
    import gymnasium as gym

    import webgym  # noqa: F401 - registers the env ids
    from webgym.envs import env_id_for_mode

    m = run.manifest
    mode = m.get("mode")
    if mode not in ("browser", "text"):
        raise SubmissionRefused(f"the manifest's mode is {mode!r}, not 'browser' or 'text'")
    env = gym.make(
        env_id_for_mode("text"),
        split=m["split"],
        max_episode_steps=int(m["max_episode_steps"]),
        catalog=str(catalog) if catalog is not None else None,
        html=False,
        axtree=False,
        disable_env_checker=True,
    )
    try:
        if env.unwrapped.split_hash != m["split_hash"]:
            raise SubmissionRefused(
                f"cannot replay: the shop serves split {m['split']!r} version "
                f"{env.unwrapped.split_hash}, the run was made on {m['split_hash']}"
            )
        shots = bool(m.get("screenshots"))
        n_steps = 0
        for i, ep in enumerate(run.episodes, 1):
            n_steps += _replay_episode(env, ep, mode, shots)
            if on_episode is not None:
                on_episode(i, len(run.episodes))
        return n_steps
    finally:
        env.close()


def _refuse(ep: Episode, step: int | None, message: str) -> SubmissionRefused:
    where = f"episode {ep.task_id}" + (f", step {step}" if step is not None else "")
    return SubmissionRefused(f"replay refused {where}: {message}")


def _canonical(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def _check_screenshots(ep: Episode, mode: str, screenshots: bool) -> None:
    """A browser run made with ``--screenshots`` keeps one image per step and the reset's, each
    a PNG (signature and header checked when the run was read: ``Episode.screenshot_problems``);
    a text run has no
    pixels, so it keeps none."""
    shots = ep.dir / "screenshots"
    if mode == "text":
        if shots.exists() and any(shots.iterdir()):
            raise _refuse(ep, None, "a text-mode run holds screenshots (text mode has no pixels)")
        return
    if screenshots and not ep.summary.get("error"):
        absent = [t for t in range(len(ep.steps) + 1) if not screenshot_path(ep.dir, t).is_file()]
        if absent:
            raise _refuse(
                ep,
                absent[0],
                "the run was made with --screenshots in browser mode, but the screenshot "
                f"after this step ({screenshot_path(ep.dir, absent[0]).name}) is missing",
            )
    if ep.screenshot_problems:
        raise _refuse(ep, None, ep.screenshot_problems[0])


def _replay_episode(env: Any, ep: Episode, mode: str, screenshots: bool) -> int:
    """Replay one episode against its records; returns its number of steps."""
    s, records = ep.summary, ep.steps
    error = bool(s.get("error"))
    _check_screenshots(ep, mode, screenshots)
    actions = [r["action"] for r in records]
    if mode == "browser":
        for r in records:
            why = text_replayable(r["action"])
            if why:
                raise _refuse(ep, r["step"], f"{r['action']}: {why}")
    replay = iter_replay(env, ep.task_id, int(s["seed"]), actions)
    first = next(replay)  # the first observation: the reset (same task, same seed, same page)
    texts = [str(first.get("text", ""))]  # the replayed pages, checked after the records
    last = None
    for st in replay:
        record = records[st.step - 1]
        diffs = step_differences(record, st.record(), mode=mode)
        if diffs:
            if error and st.step == len(records) and machine_failure(record):
                break  # the step its last attempt failed on: a text replay does not fail
            raise _refuse(ep, st.step, f"{st.action} does not replay: " + "; ".join(diffs))
        texts.append(str(st.obs.get("text", "")))
        last = st
        if st.done and st.step < len(records):
            how = "terminated" if st.terminated else "truncated"
            raise _refuse(
                ep,
                st.step,
                f"the replayed episode ends here ({how}), but the record goes on to "
                f"{len(records)} steps",
            )
    if error:
        _check_pages(ep, texts)
        return len(records)
    if last is None or not last.done:
        raise _refuse(
            ep,
            len(records),
            "the record ends here, but the replayed episode goes on (neither terminated nor "
            "truncated): steps are missing",
        )
    checks = (
        ("reward", float(s["reward"]), last.reward),
        ("terminated", bool(s.get("terminated")), last.terminated),
        ("truncated", bool(s.get("truncated")), last.truncated),
        ("purchased_asin", s.get("purchased_asin"), last.info.get("purchased_asin")),
        ("reward_info", s.get("reward_info") or {}, last.info.get("reward_info") or {}),
    )
    diffs = [
        f"{name}: summary.json says {claimed!r}, replay {got!r}"
        for name, claimed, got in checks
        if _canonical(claimed) != _canonical(got)
    ]
    if diffs:
        raise _refuse(ep, None, "the outcome does not replay: " + "; ".join(diffs))
    _check_pages(ep, texts)
    return len(records)


def _check_pages(ep: Episode, texts: list[str]) -> None:
    """The page texts the episode recorded (``observations.jsonl``, already checked for form
    and against the steps' digests) are the replayed ones, ``texts`` (the reset's first): the
    reset's page has no digest in the steps, and a cut text is checked here only."""
    for k, (page, text) in enumerate(zip(ep.observations, texts, strict=False)):
        if not observation_matches(page, text):
            where = "after the reset" if k == 0 else "after this step"
            raise _refuse(ep, k, f"the recorded page text {where} is not the replayed page")
