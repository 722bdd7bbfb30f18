"""GenAC's generative critic (webgym_agents/algos/genac.py is the trainer): what it reads
(the state text, :class:`ActorFacts`, an instruction) and writes (a rationale, then
``Score: k``), the critic itself (:class:`GenerativeCritic`, an LM policy that keeps its LM
head) and :class:`ScoreReader`, which reads the score's distribution during generation.

Imports the policies, the models and the toolkit; never the trainer module (which imports
it) nor another algorithm.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from webgym.envs import MAX_EPISODE_STEPS
from webgym_agents.models.backbone import Backbone, load_backbone, pad_ids
from webgym_agents.policies.lm_agent import LMPolicy
from webgym_agents.policies.scorer_policy import critic_state_text
from webgym_agents.toolkit.onpolicy import (
    CRITIC_DIR,
)
from webgym_agents.toolkit.starting import freeze_lower_lm_layers

FACTS_DIR = "genac"
SCORE_ROOM = 8  # tokens after the rationale: "\nScore: 10" and the end-of-turn token


# --------------------------------------------------------------------------------------------
# What the critic reads and writes
# --------------------------------------------------------------------------------------------

SYSTEM = (
    "You are the critic of a web-shopping agent. You judge how likely the agent is to finish "
    "its task with the right purchase from the state shown."
)
INSTRUCTION = (
    "Give one short reason, then 'Score: k' with k an integer from 0 (it will fail) to "
    "10 (it will succeed)."
)


@dataclass(frozen=True)
class ActorFacts:
    """What the critic is told about the actor: its running success rate and mean reward over
    its last ``episodes`` episodes, and the turn of the state judged (0-based)."""

    success_rate: float = 0.0
    mean_reward: float = 0.0
    episodes: int = 0
    turn: int = 0

    @classmethod
    def of(cls, rewards: Sequence[float]) -> ActorFacts:
        r = np.asarray(rewards, dtype=float)
        if not len(r):
            return cls()
        return cls(float((r == 1.0).mean()), float(r.mean()), len(r))

    def at(self, turn: int) -> ActorFacts:
        return ActorFacts(self.success_rate, self.mean_reward, self.episodes, int(turn))

    def text(self) -> str:
        if not self.episodes:
            return f"The agent has no finished episodes yet. This is its turn {self.turn + 1}."
        return (
            f"The agent succeeded in {self.success_rate:.0%} of its last {self.episodes} "
            f"episodes, mean reward {self.mean_reward:.2f}. This is its turn {self.turn + 1}."
        )


_SCORE_RE = re.compile(r"score\s*[:=]\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE_RE = re.compile(r"\s*(-?\d+)\s*\.?\s*")


def parse_score(text: str) -> int | None:
    """The integer k of ``Score: k`` in a critic's output, or None when malformed: no score,
    not an integer, outside 0-10, or several scores that disagree. A text that is only an
    integer counts as its score; repeats of one score are that score."""
    found = _SCORE_RE.findall(text or "")
    if not found:
        bare = _BARE_RE.fullmatch(text or "")
        found = [bare.group(1)] if bare else []
    values = {float(x) for x in found}
    if len(values) != 1:
        return None  # none, or conflicting
    (v,) = values
    if v != int(v) or not 0 <= v <= 10:
        return None
    return int(v)


def score_values(texts: Sequence[str], fallback: float | np.ndarray) -> tuple[np.ndarray, int]:
    """v = k/10 of each output (``fallback``, one or one per output, when malformed) and the
    number of malformed outputs."""
    ks = [parse_score(t) for t in texts]
    fb = np.broadcast_to(np.asarray(fallback, dtype=float), (len(ks),))
    v = np.array([fb[i] if k is None else k / 10 for i, k in enumerate(ks)], dtype=float)
    return v, sum(k is None for k in ks)


def scoring_reward(returns: np.ndarray, v: np.ndarray, malformed: np.ndarray) -> np.ndarray:
    """R_v = 1 - (G - v)^2 (a proper scoring rule: its expectation is largest at v = E[G]);
    0, the rule's floor on [0, 1], for a malformed output."""
    return np.where(malformed, 0.0, 1.0 - (np.asarray(returns) - np.asarray(v)) ** 2)


_KIND_RE = re.compile(r" \| (item page|results page|search page|item detail page|page)[,| ]")
_ITEM_RE = re.compile(
    r"within budget: (\w+); title match ([\d.]+); goal options chosen (\d+) of (\d+)"
)
_RESULTS_RE = re.compile(r"(\d+) listed, (\d+) within budget, best title match ([\d.]+)")


def rationale(state: str) -> str:
    """A one-line rationale from the page facts of a critic state text
    (:func:`webgym_agents.policies.scorer_policy.critic_state_text`): the page kind, and on an item
    page the
    budget, title match and chosen options, on a results page the listed products in budget."""
    kind = _KIND_RE.search(state)
    page = kind.group(1) if kind else "page"
    if page == "item page" and (m := _ITEM_RE.search(state)):
        budget = {"yes": "in budget", "no": "over budget"}.get(m.group(1), "price unknown")
        return f"Item: {budget}, match {m.group(2)}, options {m.group(3)} of {m.group(4)}."
    if page == "results page" and (m := _RESULTS_RE.search(state)):
        return f"Results: {m.group(2)} of {m.group(1)} in budget, best match {m.group(3)}."
    if page == "search page":
        return "Search page, nothing chosen."
    return f"{page.capitalize()}, no purchase in view."


def target_score(g: float) -> int:
    """round(10 G) half up, within 0-10."""
    return int(min(10, max(0, math.floor(10 * float(g) + 0.5))))


def sft_target(state: str, g: float) -> str:
    """The SFT target of a state with MC return ``g``: its rationale, then the score."""
    return f"{rationale(state)}\nScore: {target_score(g)}"


# --------------------------------------------------------------------------------------------
# The critic
# --------------------------------------------------------------------------------------------


class GenerativeCritic(LMPolicy):
    """A causal LM that judges states in words, then ``Score: k`` (v = k/10).

    An :class:`LMPolicy` subclass for its checkpoints (``policy.json`` says ``"kind":
    "genac-critic"``; fingerprint checks; the settings below ride in its metadata), its
    parameters and train/eval; it never acts. What a report calls::

        critic = GenerativeCritic.load("runs/genac-cpu/checkpoints/latest")   # or .../critic
        v = critic.values_of_observations(observations)     # np.ndarray, the env's obs dicts
        v = critic.values(state_texts, [critic.actor_facts.at(t) for t in turns])
        critic.seconds_per_estimate                          # measured on the calls so far

    ``actor_facts``: those the checkpoint's actor had when it was saved (genac/facts.json);
    ``max_steps``: the episode limit its state texts count down from. ``stats`` counts
    ``estimates``, ``value_s`` (seconds in ``values``) and ``value_fallbacks``.
    """

    KIND = "genac-critic"

    def __init__(
        self,
        backbone: Backbone,
        *args: Any,
        prompt_tokens: int = 192,
        rationale_tokens: int = 24,
        train_layers: int = 0,
        max_steps: int = MAX_EPISODE_STEPS,
        **kwargs: Any,
    ) -> None:
        super().__init__(backbone, *args, **kwargs)
        settings = self.metadata.get("genac") or {}
        self.prompt_tokens = int(settings.get("prompt_tokens", prompt_tokens))
        self.rationale_tokens = int(settings.get("rationale_tokens", rationale_tokens))
        self.train_layers = int(settings.get("train_layers", train_layers))
        self.max_steps = int(settings.get("max_steps", max_steps))
        freeze_lower_lm_layers(self.backbone.model, self.train_layers)
        self.actor_facts = ActorFacts()
        self.stats |= {"estimates": 0, "value_s": 0.0, "value_fallbacks": 0}

    def __repr__(self) -> str:
        return f"GenerativeCritic({self.backbone!r}, train_layers={self.train_layers})"

    @classmethod
    def fresh(cls, name: str, *, device: str = "cpu", seed: int = 0, **kwargs: Any):
        """The base LM ``name`` (pretrained, or a seeded random tiny-lm) as a critic."""
        return cls(load_backbone(name, device=device, seed=seed), **kwargs)

    def save(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        keys = ("prompt_tokens", "rationale_tokens", "train_layers", "max_steps")
        settings = {k: getattr(self, k) for k in keys}
        return super().save(directory, metadata={**(metadata or {}), "genac": settings})

    @classmethod
    def load(cls, directory: str | Path, *args: Any, **kwargs: Any) -> GenerativeCritic:
        """The critic in ``directory``: a genac checkpoint (its ``critic/``, with the actor
        facts of ``genac/facts.json``) or a critic folder; any other kind is refused."""
        d = Path(directory)
        facts = ActorFacts()
        if (d / CRITIC_DIR).is_dir():
            facts, d = load_actor_facts(d), d / CRITIC_DIR
        kind = cls.read_info(d).get("kind")
        if kind != cls.KIND:
            raise ValueError(f"{d} holds a {kind!r} checkpoint, not a generative critic")
        critic = super().load(d, *args, **kwargs)
        assert isinstance(critic, GenerativeCritic)
        critic.actor_facts = facts
        return critic

    @property
    def seconds_per_estimate(self) -> float:
        """Mean seconds per state of the ``values`` calls so far (NaN before the first)."""
        n = self.stats["estimates"]
        return self.stats["value_s"] / n if n else float("nan")

    # ------------------------------------------------------------------ prompts

    def fit_state(self, state: str) -> str:
        """The state text within ``prompt_tokens`` tokens, its END kept (the page facts)."""
        ids = self.backbone.encode_text(state)
        if len(ids) <= self.prompt_tokens:
            return state
        return "..." + self.backbone.tokenizer.decode(ids[-self.prompt_tokens :])

    def critic_prompt(self, state: str, facts: ActorFacts) -> str:
        user = f"{facts.text()}\nState: {self.fit_state(state)}\n{INSTRUCTION}"
        return self.backbone.render_prompt(system=SYSTEM, user=user)

    def prompts(self, states: Sequence[str], facts: ActorFacts | Sequence[ActorFacts]):
        if isinstance(facts, ActorFacts):
            facts = [facts] * len(states)
        if len(facts) != len(states):
            raise ValueError(f"{len(facts)} facts for {len(states)} states")
        return [self.critic_prompt(s, f) for s, f in zip(states, facts, strict=True)], facts

    # ------------------------------------------------------------------ generation

    def sample(
        self, prompts: Sequence[str], *, temperature: float, seed: int | None = None
    ) -> list[Any]:
        """A rationale + score per prompt (``Generation``s; greedy at temperature 0)."""
        return self.backbone.generate_with_ids(
            prompts, self.rationale_tokens + SCORE_ROOM, temperature, seed=seed
        )

    @torch.no_grad()
    def values(
        self,
        states: Sequence[str],
        facts: ActorFacts | Sequence[ActorFacts],
        *,
        mode: str = "expectation",
        chunk: int = 8,
    ) -> np.ndarray:
        """V(s) in [0, 1] per state text (:func:`critic_state_text`), given the actor's facts
        (one for all, or one per state with its turn): module docstring, step 2."""
        if mode not in ("expectation", "greedy"):
            raise ValueError(f"mode must be 'expectation' or 'greedy', not {mode!r}")
        t0 = time.perf_counter()
        prompts, facts = self.prompts(states, facts)
        out = np.zeros(len(prompts))
        for a in range(0, len(prompts), chunk):
            part = prompts[a : a + chunk]
            if mode == "greedy":  # V = k/10 of the greedy output, the fallback when malformed
                fallback = np.array([f.mean_reward for f in facts[a : a + chunk]])
                texts = [g.text for g in self.sample(part, temperature=0.0)]
                out[a : a + chunk], bad = score_values(texts, fallback)
                self.stats["value_fallbacks"] += bad
                continue
            # V = sum_k p(k | x, r) k/10, r the greedy rationale (score_distribution)
            reader = self.score_distribution(part)
            self.stats["value_fallbacks"] += sum(reader.forced)
            out[a : a + chunk] = reader.probs() @ (np.arange(11) / 10)
        self.stats["estimates"] += len(prompts)
        self.stats["value_s"] += time.perf_counter() - t0
        return out

    def values_of_observations(
        self, observations: Sequence[dict[str, Any]], **kwargs: Any
    ) -> np.ndarray:
        """:meth:`values` of env observations: their critic state texts, with ``actor_facts``
        at each observation's step."""
        states = [critic_state_text(o, self.max_steps) for o in observations]
        facts = [self.actor_facts.at(int(o.get("step", 0) or 0)) for o in observations]
        return self.values(states, facts, **kwargs)

    @torch.no_grad()
    def score_distribution(self, prompts: Sequence[str]) -> ScoreReader:
        """p(k | x, r), k = 0..10, per critic prompt x, r its greedy rationale, read in the
        very generation that writes r: the :class:`ScoreReader` after it ran (``probs()``,
        ``forced``: "Score:" appended at the cap, ``rationale``: r's token ids)."""
        from transformers import GenerationConfig, LogitsProcessorList

        bb = self.backbone
        ids, mask = pad_ids([bb.encode_text(p) for p in prompts], bb.pad_id, "left", bb.device)
        reader = ScoreReader(bb, len(prompts), ids.shape[1], self.rationale_tokens)
        gcfg = GenerationConfig(
            max_new_tokens=reader.max_new_tokens, do_sample=False, pad_token_id=bb.pad_id,
            eos_token_id=bb.eos_id, bos_token_id=bb.tokenizer.bos_token_id,
        )  # fmt: skip
        bb.model.generate(
            input_ids=ids, attention_mask=mask, generation_config=gcfg,
            logits_processor=LogitsProcessorList([reader]),
        )  # fmt: skip
        return reader


class ScoreReader:
    """A logits processor for greedy decoding that reads the score's distribution on the way.

    Each row decodes greedily (the end token barred) until its text holds "Score:" (or, at
    ``cap`` tokens without it, is made to write "\\nScore:": ``forced``); ``rationale`` keeps
    the token ids decoded until then. Then the processor forces the space, keeps
    log p(first digit) over "0".."9" at the next step, forces "1" and keeps log p("0") and
    log p(end) after it, then forces the end. So

        p(k) = p(d = k)                              k = 0, 2..9 (the score ends there)
        p(1) = p(d = 1) p(end | 1) / (p(end | 1) + p(0 | 1))
        p(10) = p(d = 1) p(0 | 1) / (p(end | 1) + p(0 | 1))

    normalised over the 11: the distribution of the well-formed scores, taking the score to
    end after a digit other than "1" (its only well-formed continuation; the SFT targets end
    there). One generation, two tokens more than the rationale's: no second prompt pass."""

    def __init__(self, backbone: Backbone, n: int, prompt_width: int, cap: int):
        tok = backbone.tokenizer
        self.decode, self.width, self.cap = tok.decode, prompt_width, int(cap)
        *_, self.space, one, zero = backbone.encode_text("Score: 10")
        self.digits = [backbone.encode_text(f"Score: {k}")[-1] for k in range(10)]
        if [backbone.encode_text(f"Score: {k}")[-2] for k in range(10)] != [self.space] * 10 or (
            [one, zero] != [self.digits[1], self.digits[0]]
        ):
            raise ValueError(f"{backbone.name}'s tokenizer does not write digits one token each")
        self.eos = int(backbone.eos_id)
        self.prefix = backbone.encode_text("\nScore:")
        self.max_new_tokens = self.cap + len(self.prefix) + 4
        self.state = ["rationale"] * n
        self.queue: list[list[int]] = [[] for _ in range(n)]
        self.forced = [False] * n
        self.rationale: list[list[int]] = [[] for _ in range(n)]
        self.first = np.full((n, 10), -np.inf)  # log p(d) over the digits
        self.after_one = np.zeros((n, 2))  # log p(end | 1), log p(0 | 1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(scores.float(), -1)
        for i, state in enumerate(self.state):
            if state == "rationale":
                made = self.rationale[i] = input_ids[i, self.width :].tolist()
                if "Score:" in self.decode(made, skip_special_tokens=True):
                    self.queue[i], self.state[i] = [self.space], "score"
                elif len(made) >= self.cap:
                    self.queue[i], self.state[i] = [*self.prefix, self.space], "score"
                    self.forced[i] = True
                else:  # greedy, but the rationale may not end before its score
                    scores[i, self.eos] = float("-inf")
                    continue
            if self.state[i] == "score" and self.queue[i]:
                _force(scores, i, self.queue[i].pop(0))
            elif self.state[i] == "score":  # after "Score: ": the first digit
                self.first[i] = logp[i, self.digits].double().cpu().numpy()
                self.state[i] = "one"
                _force(scores, i, self.digits[1])
            elif self.state[i] == "one":  # after "Score: 1": the end or "0"
                self.after_one[i] = logp[i, [self.eos, self.digits[0]]].double().cpu().numpy()
                self.state[i] = "done"
                _force(scores, i, self.eos)
        return scores

    def probs(self) -> np.ndarray:
        """(n, 11): p(k) per row (see the class docstring)."""
        p = np.exp(self.first - self.first.max(1, keepdims=True))
        split = np.exp(self.after_one - self.after_one.max(1, keepdims=True))
        split /= split.sum(1, keepdims=True)
        out = np.concatenate([p, p[:, 1:2] * split[:, 1:2]], axis=1)  # k = 0..9, then 10
        out[:, 1] *= split[:, 0]
        return out / out.sum(1, keepdims=True)


def _force(scores: torch.Tensor, row: int, token: int) -> None:
    scores[row] = float("-inf")
    scores[row, token] = 0.0


def load_actor_facts(checkpoint: str | Path) -> ActorFacts:
    """The actor facts of a genac checkpoint (its last ``facts_window`` rewards; turn 0)."""
    return ActorFacts.of(_facts_rewards(checkpoint))


def _facts_rewards(checkpoint: str | Path) -> list[float]:
    path = Path(checkpoint) / FACTS_DIR / "facts.json"
    return [float(r) for r in json.loads(path.read_text())["rewards"]] if path.is_file() else []
