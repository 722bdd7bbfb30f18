"""``lm``: a language-model policy over WebGym's action strings, and the agent that plays it.

:class:`LMPolicy` wraps one causal-LM :class:`~webgym_agents.models.backbone.Backbone` (``tiny-lm``,
``smollm2-135m``) with a prompt format, two ways of acting and an optional value head; it is
also the object the trainers (behaviour cloning, PPO, GRPO, Best-of-N filtered BC) optimise.

The prompt
----------
:func:`build_prompt` writes one user message under a system message, rendered with the
backbone's chat template and fitted to a token budget (:class:`PromptConfig`:
``max_prompt_tokens`` = 1024 by default, never more than the model's ``max_position_embeddings``
minus room for the answer). Two layouts (``PromptConfig.layout``):

* ``"shopper"`` (the default): what a shopper needs first, the page text last. The goal; on an
  item page (and its Description / Features / ... sub-pages) a ``Product:`` / ``Price:`` header;
  then the available actions, each labelled with what it is: a result link with its product's
  title and price, a radio with ``group: value`` and ``(selected)`` once chosen, another element
  with its name unless the element id already says it (``click('buy_now')`` needs no
  ``Buy Now``); then the page text (``PromptConfig.page_field``), cut to the room left (middle or
  end, a ``[... N tokens cut ...]`` marker) or left out. When even the labelled actions do not
  fit, the page is left out and the longest label texts (product titles) are shortened to their
  last words within N tokens, N the largest that fits (``# … Cable, Right Angle | $13.95``: a
  title's tail holds its distinguishing attributes; shorter texts stay whole, prices and
  ``(selected)`` always stay); when not even the prices fit, the bare action strings are listed.
  The goal and every action string are always kept whole (the prompt is then longer than the
  budget). A results page of SmolLM2's template reads::

    <|im_start|>system
    You are a shopping agent on a web shop. Reply with exactly one action from the list, on one
    line, and nothing else.<|im_end|>
    <|im_start|>user
    Instruction: i would like cruelty free and silicone free conditioner for fine hair, with
    scent: eucalyptus and size: 33.8 fl oz, and price lower than 40.00 dollars

    Available actions:
    click('back_to_search')
    click('next_page')
    click('item_b04x9sbgpj') # Fenvia Essential Conditioner, Silicone Free | $19.49
    click('item_b0ixbkm359') # Galex Signature Conditioner, Deep Conditioning | $13.49
    ...

    Page:
    Back to Search [SEP] Results for i would like ... [... 301 tokens cut ...] $14.99

    Reply with one action.<|im_end|>
    <|im_start|>assistant

  (the system text is one line in the real prompt). An item page adds ``Product: <title>`` and
  ``Price: $19.49`` above the actions and labels its radios ``click('opt_0_1') # scent:
  citrus (selected)``; a page with a search bar lists ``search[<query>] # type <query> into
  the search box and search``. Measured by ``benchmarks/perf/prompt_coverage.py`` (the share
  of prompts showing every candidate product's title and price; 40 train tasks x rule and
  random): results pages 9 / 10 / 98 % at 256 / 384 / 512 tokens (every price at 384: 100 %;
  the page-first layout: 7 / 7 / 9 %), item pages 100 % at all three (page-first 0 / 76 /
  100 %), sub-pages 100 %. A results page of ten products needs about 440 tokens.
* ``"page-first"``: the layout of format-1 checkpoints (which load with it): the page first
  (cut to fit), then the actions labelled ``role 'name'``; on a results page at 384 tokens the
  page's product lines and prices are all cut away.

Both drop the page text's own ``Instruction: [SEP] <goal> [SEP]`` prefix (the goal is shown
above it). The answer the model is trained on, and scored on, is the bare action string
followed by the end-of-turn token (``<|im_end|>``): ``click('item_b04x9sbgpj')<|im_end|>``.

Two ways of acting, and the probability of what was done
--------------------------------------------------------
:meth:`LMPolicy.decide_batch` returns one :class:`Decision` per observation, carrying
``logprob``: the log-probability of the chosen action under the distribution that actually
acted (0.0 at temperature 0, which is a point mass), and ``value`` when the policy has a value
head.

* ``mode="choice"`` (default): constrained choice. The candidates (:meth:`LMPolicy.candidates`)
  are the listed available actions plus, on a page with a search bar, ``search[<query>]`` whose
  query the LM itself writes by continuing ``prompt + "search["`` (greedy at temperature 0, else
  sampled at the same temperature T; generation stops at the first ``]`` or line end; a
  copy of the ``<query>`` placeholder or an empty query falls back to the goal up to
  ``", and price"``). Each candidate's score s_k is its summed token log-likelihood given the
  prompt (:meth:`~webgym_agents.models.backbone.Backbone.score_candidates`, the prompt's key/value
  cache shared) and one is drawn from ``softmax(s / T)`` (argmax at T = 0). The factorisation::

      log P(a_k | s) = log softmax(s / T)_k                                  a_k a listed action
      log P(search[q] | s) = log softmax(s / T)_search + sum_j log p_T(q_j | prompt, search[, q_<j)

  where q is the generated query's tokens (``Decision.query_ids``, up to and including the
  token holding ``]``) and p_T = softmax(logits / T) the distribution they were sampled from.
  That is the joint probability of writing q and then choosing it. For a listed action the
  proposed query is part of the context the choice was made in (it sets the softmax's
  normaliser through s_search) and its own probability is not counted: the query is not the
  action taken. Always a valid action.
* ``mode="generate"``: free generation (``max_new_tokens`` = 32, greedy at temperature 0, else
  sampled) parsed with :func:`webgym.actions.parse_action` (the whole text, else its first
  line). A valid action is returned in canonical form; an unparsable one as-is, so that the
  environment counts it as an invalid action (``last_action_error``), never a crash;
  ``policy.stats["invalid"]`` counts them. ``logprob`` is the sum of log p_T over the sampled
  ``Decision.token_ids`` (the end-of-turn token only when it was sampled).

Trainers recompute the same quantities with gradients: :meth:`LMPolicy.decision_logprobs`
(choice mode; equal to ``Decision.logprob`` to float precision at the same T),
:meth:`LMPolicy.evaluate_decisions` (log-probabilities, values and entropies of stored
decisions of either mode). :meth:`LMPolicy.action_logprobs` stays what behaviour cloning
maximises: the unnormalised sequence likelihood of an action string (never a PPO ratio's term).
A PPO-style trainer::

    policy.add_value_head()                      # once, when policy.value_head is None
    decisions = policy.decide_batch(observations, mode="choice", temperature=1.0, rng=gen)
    old = torch.tensor([d.logprob for d in decisions])        # frozen at collection
    ev = policy.evaluate_decisions(decisions)    # differentiable: .logprobs .values .entropies
    ratio = torch.exp(ev.logprobs - old)         # exactly 1 before the first update

(a Decision keeps ``prompt``, ``candidates``, ``index``, ``query_ids``, ``temperature``,
``token_ids``: everything :meth:`LMPolicy.evaluate_decisions` reads). The match is exact with
the model in ``eval()`` mode, as acting uses it; dropout in ``train()`` mode would differ.

The value head
--------------
``LMPolicy(..., value_head=ValueHead(hidden))`` or :meth:`LMPolicy.add_value_head` gives a scalar
V(s) read from the last layer at the prompt's last token (the prompt boundary), taken from the
same forward pass that scores the candidates (:meth:`~webgym_agents.models.backbone.Backbone.
score_candidates_and_state`) or the generation (``SequenceScores.prompt_states``): no second
pass.

Checkpoints
-----------
:meth:`LMPolicy.save` writes ``policy.json`` (format version 2, backbone name and fingerprint,
prompt config with its layout, scoring settings, a free ``metadata`` dict, and, with a value
head, its config and fingerprint), ``model.safetensors`` (the backbone model's state dict) and
``value_head.safetensors`` when there is a head. :meth:`LMPolicy.load` reads formats 1 and 2 (a
format-1 checkpoint has no head and the ``page-first`` layout) and refuses, with
:class:`~webgym_agents.models.backbone.BackboneMismatch` and the reason, a checkpoint (or a value
head) made on another backbone. An untrained checkpoint for smoke tests::

    from webgym_agents.policies.lm_agent import LMPolicy
    LMPolicy.from_backbone_name("tiny-lm").save("/tmp/lm-tiny")
    agent = make_agent("lm", checkpoint="/tmp/lm-tiny", mode="choice", temperature=0.0)

Imports only ``agents.*`` and ``webgym.*`` (plus torch, numpy, safetensors); never
``webgym_benchmarks`` or ``webgym_leaderboards``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from webgym_agents.base import PolicyAgent
from webgym_agents.models.backbone import (
    Backbone,
    BackboneMismatch,
    NotACausalLM,
    ValueHead,
    load_backbone,
)
from webgym_agents.policies.lm_acting import Decision, DecisionEval, LMActing
from webgym_agents.policies.lm_checkpoint import FORMAT_VERSION, LMCheckpoints
from webgym_agents.policies.lm_prompt import (
    DEFAULT_SYSTEM_PROMPT,
    DESCRIPTION,
    LAYOUTS,
    LEGACY_SYSTEM_PROMPT,
    PromptConfig,
    build_prompt,
)
from webgym_agents.policies.lm_scoring import LMScoring

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "FORMAT_VERSION",
    "LAYOUTS",
    "LEGACY_SYSTEM_PROMPT",
    "Decision",
    "DecisionEval",
    "LMAgent",
    "LMPolicy",
    "PromptConfig",
    "build_prompt",
]


class LMPolicy(LMActing, LMScoring, LMCheckpoints):
    """A causal LM acting on WebGym observations (see the module docstring).

    ``KIND`` is what ``policy.json`` says the checkpoint is (``"lm-policy"``; the LM critic,
    agents/policies/lm_critic.py, a subclass, writes ``"lm-critic"``).

    ``add_eos``: the end-of-turn token ends every scored/trained action string (so that a
    trained model stops after the action); ``max_new_tokens``: the generation length (actions
    and search queries); ``value_head``: an optional :class:`ValueHead` over the prompt
    boundary (:meth:`add_value_head` makes one). ``metadata``: a free dict saved with the
    checkpoint (training config, step, scores). ``stats`` counts ``acts``, ``invalid``
    generations and ``fallback_queries``.
    """

    KIND = "lm-policy"

    def __init__(
        self,
        backbone: Backbone,
        config: PromptConfig | None = None,
        *,
        add_eos: bool = True,
        max_new_tokens: int = 32,
        metadata: dict[str, Any] | None = None,
        value_head: ValueHead | None = None,
    ) -> None:
        if not backbone.is_causal:
            raise NotACausalLM(
                f"LMPolicy needs a causal language model; {backbone.name} is an encoder "
                "(use it for critics: Backbone.hidden_states / values)"
            )
        self.backbone = backbone
        self.config = config or PromptConfig()
        self.add_eos = add_eos
        self.max_new_tokens = max_new_tokens
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.stats: dict[str, int] = {"acts": 0, "invalid": 0, "fallback_queries": 0}
        self.value_head: ValueHead | None = None
        if value_head is not None:
            self.set_value_head(value_head)

    def __repr__(self) -> str:
        head = ", value_head" if self.value_head is not None else ""
        return f"LMPolicy({self.backbone!r}, {self.config!r}{head})"

    @classmethod
    def from_backbone_name(
        cls,
        name: str,
        config: PromptConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> LMPolicy:
        """An untrained policy on ``load_backbone(name)`` (e.g. ``"tiny-lm"``)."""
        return cls(load_backbone(name, device=device, dtype=dtype), config, **kwargs)

    @property
    def model(self) -> torch.nn.Module:
        return self.backbone.model

    def parameters(self):
        """The backbone's parameters, then the value head's (when there is one)."""
        for m in self._modules():
            yield from m.parameters()

    # nn.Module's train/eval/state_dict, so the on-policy trainers, data parallelism and the
    # checkpoint digests treat this policy as they treat the scorer (an nn.Module)
    def _modules(self) -> list[torch.nn.Module]:
        return [self.backbone.model] + ([self.value_head] if self.value_head is not None else [])

    @property
    def training(self) -> bool:
        return self.backbone.model.training

    def train(self, mode: bool = True) -> LMPolicy:
        for m in self._modules():
            m.train(mode)
        return self

    def eval(self) -> LMPolicy:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> LMPolicy:
        for m in self._modules():
            m.requires_grad_(requires_grad)
        return self

    def buffers(self):
        for m in self._modules():
            yield from m.buffers()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The LM's state (``model.*``) and the value head's (``value_head.*``)."""
        out = {f"model.{k}": v for k, v in self.backbone.model.state_dict().items()}
        if self.value_head is not None:
            out |= {f"value_head.{k}": v for k, v in self.value_head.state_dict().items()}
        return out

    # ------------------------------------------------------------------ the value head

    def set_value_head(self, head: ValueHead | None) -> None:
        """Use ``head`` (float32, moved to the backbone's device) as V(s); None removes it."""
        if head is not None and head.hidden_size != self.backbone.hidden_size:
            raise BackboneMismatch(
                f"a value head over {head.hidden_size} features does not fit "
                f"{self.backbone.name} (hidden size {self.backbone.hidden_size})"
            )
        self.value_head = None if head is None else head.to(self.backbone.device, torch.float32)

    def add_value_head(self, mlp_hidden: int | None = None, dropout: float = 0.0) -> ValueHead:
        """A new value head, its output layer zero-initialised (V = 0 before training)."""
        head = ValueHead(self.backbone.hidden_size, mlp_hidden, dropout)
        last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
        self.set_value_head(head)
        return self.value_head

    def _head(self, states: torch.Tensor) -> torch.Tensor:
        assert self.value_head is not None
        return self.value_head(states.float())

    def values(self, prompts: Sequence[str]) -> torch.Tensor:
        """V(prompt) per prompt, shape (n,), by a forward pass of its own (a decision's value
        comes from its scoring pass instead); differentiable. Needs a value head."""
        if self.value_head is None:
            raise ValueError("this policy has no value head (LMPolicy.add_value_head makes one)")
        if not prompts:
            return torch.zeros(0, device=self.backbone.device)
        return self._head(self.backbone.hidden_states(list(prompts), [-1], "last")[:, 0])

    # ------------------------------------------------------------------ prompts, candidates


# --------------------------------------------------------------------------------------------
# The agent.
# --------------------------------------------------------------------------------------------


class LMAgent(PolicyAgent):
    """Plays an :class:`LMPolicy`: ``make_agent("lm", checkpoint=DIR, mode=, temperature=)``.

    ``mode``: ``"choice"`` (default) or ``"generate"``; ``temperature`` 0 (default) is
    deterministic. Samples only from the generator made in ``reset(seed=...)``. An in-memory
    policy (a trainer's evaluation) is played with ``LMAgent(policy=policy)``.
    """

    name = "lm"
    description = DESCRIPTION
    needs_checkpoint = True
    deterministic = True

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        policy: LMPolicy | None = None,
        mode: str = "choice",
        temperature: float = 0.0,
        device: str = "cpu",
    ) -> None:
        if mode not in ("choice", "generate"):
            raise ValueError(f"mode must be 'choice' or 'generate', not {mode!r}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, not {temperature}")
        if policy is None:
            if checkpoint is None:
                raise ValueError("LMAgent needs a checkpoint directory or a policy")
            policy = LMPolicy.load(checkpoint, device=device)
        super().__init__(policy, temperature=temperature)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.mode = mode

    def decide_kwargs(self) -> dict[str, Any]:
        return {"mode": self.mode}
