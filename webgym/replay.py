"""Re-playing a recorded episode: its actions, from its task and seed, in an environment.

A run directory (docs/run-format.md) records actions and what they led to (an observation
digest, the reward, the flags, the effect), not the observations themselves. Replaying the
actions in the browserless text twin of the env (``WebGym-ShoppingText-v0``; deterministic,
about 1 ms a step) rebuilds every observation, and what the replay would have recorded can be
compared with what the run says it recorded. Two users:

* behaviour cloning (``webgym_agents.toolkit.rollouts.replay_episode``) rebuilds the
  observations of a run's episodes to train on them, checking each page against the recorded
  digest;
* the leaderboard (``webgym_leaderboards.verify``) replays every episode of a submitted run and
  refuses it at the first step whose record the replay does not reproduce.

Browser-mode runs replay here too: both modes observe the same served HTML, so the page text,
the URL, the reward and the text distance agree; what only a browser produces (screenshots,
pixel distances, the pixel effect label, ``mouse_click``) is what :func:`step_differences`
leaves out for them.

Imports ``webgym.runs`` (the record format) and ``webgym.actions``; nothing above ``webgym``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webgym.actions import ActionParseError, is_supported, parse_action
from webgym.effects import EffectThresholds
from webgym.runs import obs_digest, step_record

__all__ = [
    "REPLAYED_FIELDS",
    "ReplayMismatch",
    "ReplayedStep",
    "iter_replay",
    "replay_actions",
    "step_differences",
    "text_replayable",
]

# The fields of a step record that a text-mode replay reproduces exactly, in either mode.
# (``effect_label`` too, in text mode; ``pixel_distance`` and browser-mode labels need pixels.)
REPLAYED_FIELDS = (
    "obs_digest",
    "reward",
    "terminated",
    "truncated",
    "last_action_error",
    "url",
    "text_distance",
)


class ReplayMismatch(RuntimeError):
    """Re-playing recorded actions did not reproduce the recorded episode: ``task_id`` and
    ``step`` (1-based; 0 for the reset) say where, the message what differs."""

    def __init__(self, task_id: str, step: int, message: str) -> None:
        super().__init__(f"{task_id}: step {step}: {message}")
        self.task_id, self.step, self.reason = task_id, step, message


@dataclass
class ReplayedStep:
    """One replayed action: the observation it was taken in, and everything that followed."""

    step: int  # 1-based
    action: str
    obs_before: dict[str, Any]
    obs: dict[str, Any]  # the observation after the action
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any] = field(repr=False)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated

    def record(self) -> dict[str, Any]:
        """The step record the harness would have written for this step (``elapsed_s`` 0)."""
        return step_record(
            step=self.step,
            action=self.action,
            obs=self.obs,
            reward=self.reward,
            terminated=self.terminated,
            truncated=self.truncated,
            effect=self.info.get("action_effect"),
            elapsed_s=0.0,
        )


def text_replayable(action: str) -> str | None:
    """Why ``action`` cannot be replayed in the text twin (a browser-only action such as
    ``mouse_click``), or None when it can. An unparsable action replays: it is an invalid
    action in both modes alike."""
    try:
        parsed = parse_action(action)
    except ActionParseError:
        return None
    if not is_supported(parsed, "text"):
        return f"{parsed.name} needs a browser (pixels); the text twin cannot replay it"
    return None


def iter_replay(
    env: Any, task_id: str, seed: int, actions: Sequence[str]
) -> Iterator[ReplayedStep | dict[str, Any]]:
    """Reset ``env`` to ``task_id`` with ``seed`` and step it through ``actions``.

    Yields the first observation (a dict), then one :class:`ReplayedStep` per action; stops
    after the last action or when the episode ends, whichever comes first (the caller sees
    which from ``step.done`` and the number of steps it got).
    """
    obs, _info = env.reset(seed=seed, options={"task_id": task_id})
    yield obs
    for t, action in enumerate(actions, 1):
        next_obs, reward, terminated, truncated, info = env.step(action)
        yield ReplayedStep(
            step=t,
            action=action,
            obs_before=obs,
            obs=next_obs,
            reward=float(reward),
            terminated=bool(terminated),
            truncated=bool(truncated),
            info=dict(info),
        )
        if terminated or truncated:
            return
        obs = next_obs


def replay_actions(
    env: Any,
    task_id: str,
    seed: int,
    actions: Sequence[str],
    *,
    digests: Sequence[str | None] | None = None,
) -> tuple[dict[str, Any], list[ReplayedStep]]:
    """Replay ``actions`` and return (the first observation, the replayed steps).

    With ``digests`` (each step's recorded ``obs_digest``; None: not checked) every rebuilt
    observation is checked against them. :class:`ReplayMismatch` on the first page that
    differs, and when the episode ends before the last action.
    """
    replay = iter_replay(env, task_id, seed, actions)
    first = next(replay)
    steps: list[ReplayedStep] = []
    for st in replay:
        steps.append(st)
        want = digests[st.step - 1] if digests is not None and st.step <= len(digests) else None
        if want is not None and obs_digest(st.obs) != want:
            raise ReplayMismatch(task_id, st.step, f"{st.action} led to another page")
        if st.done and st.step < len(actions):
            raise ReplayMismatch(
                task_id, st.step, f"the episode ended here, before its {len(actions)} actions"
            )
    return first, steps


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _same_url(a: Any, b: Any) -> bool:
    """URLs equal but for scheme and host: a browser run records the shop's 127.0.0.1:PORT, the
    text twin its own host; the path and query are what the agent's actions decide."""
    if not (isinstance(a, str) and isinstance(b, str)):
        return a == b
    from urllib.parse import urlsplit

    sa, sb = urlsplit(a), urlsplit(b)
    return (sa.path, sa.query, sa.fragment) == (sb.path, sb.query, sb.fragment)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def step_differences(
    recorded: Mapping[str, Any], replayed: Mapping[str, Any], *, mode: str
) -> list[str]:
    """What a recorded step claims that its replay (:meth:`ReplayedStep.record`, text mode)
    does not reproduce, as ``"field: recorded X, replay Y"`` lines (empty: they agree).

    ``mode`` is the mode the run was recorded in. Text runs must also agree on the effect
    label and record no pixel distance; browser runs must record a pixel distance, and their
    label must be the pixel label of it at the harness's threshold (the replay cannot measure
    pixels: the distance itself is taken as recorded).
    """
    out = [
        f"{key}: recorded {_brief(recorded.get(key))}, replay {_brief(replayed.get(key))}"
        for key in REPLAYED_FIELDS
        if not (_same_url if key == "url" else _same)(recorded.get(key), replayed.get(key))
    ]
    pixels = recorded.get("pixel_distance")
    if mode == "text":
        if pixels is not None:
            out.append(f"pixel_distance: recorded {pixels!r} in a text-mode run (no screenshots)")
        if not _same(recorded.get("effect_label"), replayed.get("effect_label")):
            out.append(
                f"effect_label: recorded {recorded.get('effect_label')!r}, "
                f"replay {replayed.get('effect_label')!r}"
            )
    elif not isinstance(pixels, int | float) or isinstance(pixels, bool):
        out.append(
            f"pixel_distance: recorded {pixels!r}; a browser-mode step measures one "
            "(is this a text-mode run labelled as a browser run?)"
        )
    elif recorded.get("effect_label") != int(pixels >= EffectThresholds().pixel):
        out.append(
            f"effect_label: recorded {recorded.get('effect_label')!r}, but the recorded pixel "
            f"distance {pixels} gives {int(pixels >= EffectThresholds().pixel)}"
        )
    return out
