"""The paper's own ROME, run on drift's model, key statistics, context prefixes and cases: the peer
side of ``benchmarks/bench.py peer``.

Runs in ``.venv-peer`` (``bash scripts/setup-peer.sh DIR``), never in drift's environment, and
imports the reference code (an EasyEdit fork: github.com/PinzhengWang322/Reveal_Attention_Drift)
from ``--reference DIR`` at run time; nothing of it is copied into this repository. It does not
import drift either: what it shares with drift comes in as files.

    .venv-peer/bin/python benchmarks/peer_rome.py --reference DIR --cases CASES.json [--steps 20]
        [--gamma 0] [--flops] [--setup SETUP.json]
    .venv-peer/bin/python benchmarks/peer_rome.py --reference DIR --serve     # bench.py's worker

Per case it calls the reference's ``execute_rome`` (``compute_u``, then ``compute_v``, then the
rank-one update put in and taken out again), timed, and prints seconds per edit, ‖ΔW‖/‖W‖ with
ΔW = u ⊗ v as ``apply_rome_to_model`` adds it, the final loss (every term) and the number of
forward passes. ``--flops``: matrix-multiply GFLOP (``torch.utils.flop_counter``) of ``compute_v``
at 2 and at 3 passes, whose difference is one optimisation step (forward and backward), and of a
whole edit: the quantities ``bench.py peer --flops`` measures on drift's side.

The same things as drift's side:

- the model: drift's converted Hugging Face folder (``~/.cache/drift/models/...``), float32, loaded
  with ``LlamaForCausalLM`` as the reference's ``easy_editor.py`` loads its Llama models (pad token
  = EOS, right padding, no ``token_type_ids``); its RoPE base is read from the folder's
  ``rope_parameters`` and its tokenizer.json's BPE merges rewritten as strings, two forms of
  transformers 5 that transformers 4.40 / tokenizers 0.19 (the reference's pins) do not read;
  ``bench.py peer`` checks the tokens and the unedited log-probabilities equal drift's;
- the key statistics: drift's cached C of the edited layer (a safetensors file) written into the
  reference's own cache format (``runningstats.SecondMoment``'s npz, where ``layer_stats`` looks for
  it), so the reference's ``layer_stats`` → ``get_inv_cov`` path runs unchanged and never computes;
- the context templates: drift's cached prefixes as ``prefix + "{}"`` in the reference's
  ``CONTEXT_TEMPLATES_CACHE`` (bare ``"{}"`` first), so it samples none;
- the cases and the hyper-parameters (layer, steps, lr, ω, weight decay, clamp; its ``v_loss_layer``
  the last layer, ``fact_token`` ``subject_last``; SADR as its scripts run it: ``attn_W_loss_weight``
  = γ·10⁴, hinge), and one thread.

Adapted, without changing what is computed: the reference hard-codes ``"cuda"``; on a machine
without one its ``torch.zeros/tensor(device="cuda")``, ``Tensor.cuda()``, ``BatchEncoding.to("cuda")``
and the ``.to("cuda")`` of its inverse-covariance loader are pointed at the CPU. ``datasets`` and
``matplotlib`` are not installed: ``layer_stats.py`` imports ``load_dataset`` (used only to compute
statistics, which are handed over) and ``compute_v.py`` one unused name of matplotlib, so both get
stand-ins. The reference's printing goes to a buffer, from which the passes are counted; the loss
values are read at full precision from its own ``np.round`` calls in that print.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
import types
from pathlib import Path

THREADS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _threads_from_argv() -> str:
    argv = sys.argv
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


if __name__ == "__main__":  # before torch is imported; not when imported (tests)
    for _var in THREADS_ENV:
        os.environ[_var] = _threads_from_argv()

import torch  # noqa: E402

CACHE = Path(os.environ.get("DRIFT_CACHE", Path.home() / ".cache" / "drift"))
ROME_CONTEXT = ((5, 10), (10, 10))  # ROME's context_template_length_params
LOSS_TERMS = ("loss", "nll", "kl", "weight_decay", "attn_W", "attn_K", "last_hid")  # its print, in order


# --------------------------------------------------------------------------------------------
# Importing the reference without its package-level imports (easyeditor/__init__.py imports
# every editor, dataset and trainer, with their dependencies).
# --------------------------------------------------------------------------------------------


def _stand_ins() -> None:
    """``datasets`` (layer_stats.py: ``from datasets import load_dataset``, used only to compute
    statistics) and ``matplotlib.style`` (compute_v.py: ``from matplotlib.style import context``,
    unused), when they are not installed."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        ds = types.ModuleType("datasets")

        def load_dataset(*args, **kwargs):
            raise RuntimeError(
                "peer_rome: the reference tried to compute key statistics; they should have been "
                "found in the npz written from drift's cache (see write_stats)"
            )

        ds.load_dataset = load_dataset
        sys.modules["datasets"] = ds
    try:
        import matplotlib.style  # noqa: F401
    except ImportError:
        mpl = types.ModuleType("matplotlib")
        style = types.ModuleType("matplotlib.style")
        style.context = None
        mpl.style = style
        sys.modules["matplotlib"], sys.modules["matplotlib.style"] = mpl, style


def import_reference(reference: Path):
    """The reference's ``easyeditor.models.rome`` package (rome_main, compute_u, compute_v, ...)."""
    root = reference / "easyeditor"
    if not (root / "models" / "rome" / "compute_v.py").exists():
        sys.exit(f"peer_rome: {reference} holds no easyeditor/models/rome/compute_v.py")
    _stand_ins()
    for name, folder in (("easyeditor", root), ("easyeditor.models", root / "models")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(folder)]  # a namespace without running the package's __init__.py
        sys.modules[name] = pkg
    import importlib

    return importlib.import_module("easyeditor.models.rome")


# --------------------------------------------------------------------------------------------
# "cuda" -> the CPU
# --------------------------------------------------------------------------------------------


def _cpu(device):
    return "cpu" if device is not None and str(device).startswith("cuda") else device


class _TorchOnCPU(types.ModuleType):
    """``torch`` as the reference's modules see it: everything torch's, except that the
    factories it calls with ``device="cuda"`` make CPU tensors."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def zeros(*args, device=None, **kwargs):
        return torch.zeros(*args, device=_cpu(device), **kwargs)

    @staticmethod
    def tensor(*args, device=None, **kwargs):
        return torch.tensor(*args, device=_cpu(device), **kwargs)


def run_on_cpu(rome) -> None:
    """Point the reference's hard-coded ``"cuda"`` at the CPU (only where it has no GPU)."""
    from transformers.tokenization_utils_base import BatchEncoding

    mods = {n: sys.modules[f"easyeditor.models.rome.{n}"] for n in ("compute_v", "compute_u", "rome_main")}
    mods["compute_v"].torch = _TorchOnCPU()  # torch.zeros/tensor(device="cuda"), in compute_v only
    torch.Tensor.cuda = lambda self, *a, **k: self  # compute_v: torch.tensor(0).cuda()
    to = BatchEncoding.to
    BatchEncoding.to = lambda self, device: to(self, _cpu(device))  # tok(...).to("cuda")
    get_inv_cov = mods["compute_u"].get_inv_cov

    def inv_cov_on_cpu(*args, **kwargs):  # stat.mom2.moment().to("cuda"), once per layer
        tensor_to = torch.Tensor.to

        def to_cpu(self, *a, **k):
            a = tuple(_cpu(x) if isinstance(x, (str, torch.device)) else x for x in a)
            return tensor_to(self, *a, **k)

        torch.Tensor.to = to_cpu
        try:
            return get_inv_cov(*args, **kwargs)
        finally:
            torch.Tensor.to = tensor_to

    mods["compute_u"].get_inv_cov = inv_cov_on_cpu


# --------------------------------------------------------------------------------------------
# drift's model, statistics and prefixes
# --------------------------------------------------------------------------------------------


def load_model(folder: Path):
    """drift's converted model as the reference loads a Llama: float32, pad = EOS, right padding."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    config = LlamaConfig.from_pretrained(folder)
    rope = getattr(config, "rope_parameters", None) or {}
    if rope:  # transformers ≥ 5 writes the RoPE base here; 4.40 reads config.rope_theta
        if rope.get("rope_type", "default") != "default":
            sys.exit(f"peer_rome: RoPE scaling {rope} is not handled")
        config.rope_theta = float(rope["rope_theta"])
    model = LlamaForCausalLM.from_pretrained(folder, config=config, torch_dtype=torch.float32).eval()
    special = json.loads((folder / "tokenizer_config.json").read_text())
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file(folder)),
        model_input_names=["input_ids", "attention_mask"],  # as AutoTokenizer's Llama/GPT-2 classes
        **{k: special[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if k in special},
    )
    tok.pad_token_id = tok.eos_token_id  # as easy_editor.py does for its Llama models
    tok.padding_side = "right"
    return model, tok


def tokenizer_file(folder: Path) -> Path:
    """The folder's tokenizer.json, readable by tokenizers 0.19 (transformers 4.40's): newer
    tokenizers write BPE merges as pairs ``["Ġ", "t"]``, 0.19 reads ``"Ġ t"``. Same merges, same
    order (none holds a space), written once under the peer cache."""
    import hashlib

    raw = (folder / "tokenizer.json").read_bytes()
    spec = json.loads(raw)
    merges = spec.get("model", {}).get("merges") or []
    if not merges or isinstance(merges[0], str):
        return folder / "tokenizer.json"
    if any(" " in part for pair in merges for part in pair):
        sys.exit("peer_rome: a BPE merge holds a space; it cannot be written in tokenizers 0.19's form")
    spec["model"]["merges"] = [" ".join(pair) for pair in merges]
    out = CACHE / "peer" / f"tokenizer-{hashlib.sha256(raw).hexdigest()[:16]}.json"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(spec, ensure_ascii=False))
        tmp.replace(out)
    return out


def default_model() -> Path:
    found = sorted((CACHE / "models").glob("smollm2-135m-*/config.json"))
    if not found:
        sys.exit(f"peer_rome: no converted SmolLM2 under {CACHE / 'models'}; run `python -m drift prepare`")
    return found[-1].parent


def default_prefixes() -> list[str]:
    """drift's ROME prefixes from its cache, as ``drift.editors.context.generated_prefixes``
    returns them: the bare prompt, then each sampled text with braces removed and ``". "`` after."""
    out = [""]
    for g, (length, count) in enumerate(ROME_CONTEXT):
        path = CACHE / "prefixes" / f"smollm2-135m-{length}x{count}-g{g}-s0-v3.json"
        out += [t.replace("{", "").replace("}", "") + ". " for t in json.loads(path.read_text())]
    return out


def default_stats(layer: int) -> Path:
    found = sorted((CACHE / "stats" / "smollm2-135m").glob(f"mlp_key-L{layer}-*-t512-p1.safetensors"))
    if len(found) != 1:
        sys.exit(f"peer_rome: expected one cached C of layer {layer}, found {[p.name for p in found]}")
    return found[0]


def write_stats(rome, model, hparams, stats: Path) -> Path:
    """drift's C (``stats``) as the npz the reference's ``layer_stats`` loads for this model,
    layer and settings: a ``CombinedStat`` of one ``SecondMoment`` (count = drift's token count,
    mom2 = C · count in float32, so ``moment()`` is C), saved with its own ``save_cached_state``."""
    from easyeditor.util.runningstats import CombinedStat, SecondMoment, save_cached_state
    from safetensors import safe_open

    with safe_open(str(stats), "pt") as f:
        C = f.get_tensor("C").double()
        count = int((f.metadata() or {}).get("tokens", 1))
    layer_name = hparams.rewrite_module_tmp.format(hparams.layers[0])
    # layer_stats' own file name (model_name None, batch_tokens None, to_collect ["mom2"])
    model_name = model.config._name_or_path.replace("/", "_").split("_")[-1]
    path = (
        Path(hparams.stats_dir)
        / model_name
        / f"{hparams.mom2_dataset}_stats"
        / f"{layer_name}_{hparams.mom2_dtype}_mom2_{hparams.mom2_n_samples}.npz"
    )
    stat = CombinedStat(mom2=SecondMoment())
    stat.mom2.count = count
    stat.mom2.mom2 = (C * count).float()
    save_cached_state(str(path), stat, {"sample_size": hparams.mom2_n_samples})
    return path


# --------------------------------------------------------------------------------------------
# Running the reference
# --------------------------------------------------------------------------------------------


def make_hparams(rome, model, s: dict):
    """The reference's ROMEHyperParams for this model (module names of its Llama files)."""
    gamma = float(s.get("gamma", 0.0))
    return rome.ROMEHyperParams(
        alg_name="ROME",
        model_name="SmolLM2-135M-Instruct",  # not a "tinyllama"/"llama13b": GPT-2-style targets
        stats_dir=s["stats_dir"],
        device=0,
        layers=[int(s["layer"])],
        fact_token="subject_last",
        v_num_grad_steps=int(s["steps"]),
        v_lr=float(s["lr"]),
        v_loss_layer=model.config.num_hidden_layers - 1,
        v_weight_decay=float(s["weight_decay"]),
        clamp_norm_factor=float(s["clamp_norm"]),
        kl_factor=float(s["kl_factor"]),
        mom2_adjustment=True,
        context_template_length_params=[list(x) for x in ROME_CONTEXT],
        rewrite_module_tmp="model.layers.{}.mlp.down_proj",
        layer_module_tmp="model.layers.{}",
        mlp_module_tmp="model.layers.{}.mlp",
        attn_module_tmp="model.layers.{}.self_attn",
        ln_f_module="model.norm",
        lm_head_module="lm_head",
        mom2_dataset="wikipedia",
        mom2_n_samples=100000,
        mom2_dtype="float32",
        model_parallel=False,
        attn_W_loss_weight=gamma * 1e4,  # its scripts: --attn_W_loss_weight=100 (× 1e-4 in the code)
        attnW_droupout=0,
        attn_K_loss_weight=0,
        last_hid_restrain_weight=0,
        last_hid_restrain_layers=None,
        high_attn_range=None,
        loss_type="KL",
        hinge=gamma > 0,  # its scripts run SADR with --hinge
    )


class _Recorder(types.ModuleType):
    """``numpy`` as compute_v sees it, recording the full-precision values it rounds for its print."""

    def __init__(self):
        super().__init__("numpy")
        import numpy

        self._np, self.values = numpy, []

    def __getattr__(self, name):
        return getattr(self._np, name)

    def round(self, x, *args, **kwargs):
        self.values.append(float(x))
        return self._np.round(x, *args, **kwargs)


class Peer:
    """The reference's ROME on drift's model, prefixes and statistics (see the module docstring)."""

    def __init__(self, reference: Path, setup: dict):
        import transformers

        transformers.logging.set_verbosity_error()
        torch.set_num_threads(int(setup.get("threads", 1)))
        torch.set_num_interop_threads(int(setup.get("threads", 1)))
        self.rome = import_reference(reference)
        self.cv = sys.modules["easyeditor.models.rome.compute_v"]
        self.main = sys.modules["easyeditor.models.rome.rome_main"]
        self.cu = sys.modules["easyeditor.models.rome.compute_u"]
        if not torch.cuda.is_available():
            run_on_cpu(self.rome)
        self.setup = dict(setup)
        self.setup.setdefault("stats_dir", str(CACHE / "peer" / "stats"))
        self.model, self.tok = load_model(Path(setup["model"]))
        torch.set_grad_enabled(True)
        # Context templates: drift's prefixes, bare first; the reference samples none.
        self.main.CONTEXT_TEMPLATES_CACHE = [p + "{}" for p in setup["prefixes"]]
        self.recorder = _Recorder()
        self.cv.np = self.recorder
        hp = make_hparams(self.rome, self.model, self.setup)
        self.stats_file = write_stats(self.rome, self.model, hp, Path(setup["stats"]))

    def probe(self, prompt: str) -> dict:
        """The unedited model's top log-probabilities after ``prompt`` (checks it is drift's model)."""
        with torch.no_grad():
            ids = self.tok(prompt, return_tensors="pt")
            logp = self.model(**ids).logits[0, -1].log_softmax(-1)
        top = logp.topk(10)
        return {"ids": ids.input_ids[0].tolist(), "top": top.indices.tolist(), "logp": top.values.tolist()}

    def request(self, case: dict) -> dict:
        return {"prompt": case["prompt"], "subject": case["subject"], "target_new": case["target_new"]}

    def edit(self, case: dict, steps: int | None = None, gamma: float | None = None) -> dict:
        """One ROME edit of ``case`` by the reference's ``execute_rome``: seconds, ‖ΔW‖/‖W‖, the
        loss terms of its last pass, its passes."""
        s = dict(self.setup, steps=steps or self.setup["steps"])
        if gamma is not None:
            s["gamma"] = gamma
        hp = make_hparams(self.rome, self.model, s)
        self.recorder.values = []
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            t0 = time.perf_counter()
            deltas = self.main.execute_rome(self.model, self.tok, self.request(case), hp)
            seconds = time.perf_counter() - t0
        ((name, (u, v)),) = deltas.items()
        W = self.model.get_parameter(name)
        dW = torch.outer(u, v)
        passes = len(re.findall(r"^loss ", out.getvalue(), flags=re.M))
        vals = self.recorder.values
        last = (
            dict(zip(LOSS_TERMS, vals[-len(LOSS_TERMS) :])) if len(vals) == passes * len(LOSS_TERMS) else {}
        )
        return {
            "case_id": case.get("case_id"),
            "seconds": seconds,
            "rel_dw": float(dW.norm() / W.norm()),
            "dw_norm": float(dW.norm()),
            "loss": last.get("loss"),
            "terms": last,
            "passes": passes,
            "u": u.tolist(),  # ΔW = u ⊗ v, [d_mlp] ⊗ [d_model]
            "v": v.tolist(),
        }

    def flops(self, case: dict, gamma: float | None = None, steps: int | None = None) -> dict:
        """Matrix-multiply GFLOP (``FlopCounterMode``) of compute_v at 2 and 3 passes, whose
        difference is one optimisation step (forward and backward); and of a whole edit
        (``execute_rome`` at ``steps`` passes, or the setup's)."""
        from torch.utils.flop_counter import FlopCounterMode

        request = self.request(case)  # as execute_rome prepares it before compute_u / compute_v
        if request["target_new"] != " ":
            request["target_new"] = " " + request["target_new"]
        if "{}" not in request["prompt"]:
            request["prompt"] = request["prompt"].replace(request["subject"], "{}")
        templates = self.main.CONTEXT_TEMPLATES_CACHE
        counted = {}
        for n in (2, 3):
            s = dict(self.setup, steps=n)
            if gamma is not None:
                s["gamma"] = gamma
            hp = make_hparams(self.rome, self.model, s)
            with contextlib.redirect_stdout(io.StringIO()):
                u = self.cu.compute_u(self.model, self.tok, request, hp, hp.layers[0], templates)
                out = io.StringIO()
                counter = FlopCounterMode(display=False)
                with counter, contextlib.redirect_stdout(out):
                    self.cv.compute_v(self.model, self.tok, request, hp, hp.layers[0], u, templates)
            passes = len(re.findall(r"^loss ", out.getvalue(), flags=re.M))
            if passes != n:
                raise RuntimeError(f"compute_v stopped after {passes} of {n} passes; cannot count a step")
            counted[n] = counter.get_total_flops() / 1e9
        counter = FlopCounterMode(display=False)
        with counter:
            whole = self.edit(case, steps, gamma)
        return {
            "case_id": case.get("case_id"),
            "gflop_2": counted[2],
            "gflop_3": counted[3],
            "gflop_step": counted[3] - counted[2],
            "gflop_edit": counter.get_total_flops() / 1e9,
            "passes": whole["passes"],
        }


def default_setup(args) -> dict:
    layer = args.layer
    return {
        "model": str(args.model or default_model()),
        "stats": str(args.stats or default_stats(layer)),
        "prefixes": default_prefixes(),
        "layer": layer,
        "steps": args.steps,
        "lr": 0.5,
        "kl_factor": 0.0625,
        "weight_decay": 0.5,
        "clamp_norm": 4.0,
        "gamma": args.gamma,
        "threads": int(args.threads),
    }


def serve(reference: Path) -> None:
    """bench.py's worker: the first line of stdin is the setup (JSON), each later line one job
    ``{"edit": case, "steps": n, "gamma": g}``, ``{"flops": case}`` or ``{"probe": prompt}``; each
    answer is one line ``@peer <JSON>`` on stdout (anything else there is noise)."""
    real = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the real stdout

    def answer(obj) -> None:
        real.write("@peer " + json.dumps(obj) + "\n")
        real.flush()

    setup = json.loads(sys.stdin.readline())
    peer = Peer(reference, setup)
    answer(
        {
            "ready": True,
            "stats_npz": str(peer.stats_file),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            if "edit" in job:
                answer(peer.edit(job["edit"], job.get("steps"), job.get("gamma")))
            elif "flops" in job:
                answer(peer.flops(job["flops"], job.get("gamma"), job.get("steps")))
            elif "probe" in job:
                answer(peer.probe(job["probe"]))
            else:
                answer({"error": f"unknown job {sorted(job)}"})
        except Exception as e:  # reported to the caller, which decides
            answer({"error": f"{type(e).__name__}: {e}"})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", required=True, type=Path, help="a checkout of the reference code")
    parser.add_argument("--serve", action="store_true", help="bench.py's worker (JSON lines on stdin)")
    parser.add_argument("--cases", type=Path, help="JSON list of {case_id, prompt, subject, target_new}")
    parser.add_argument("--setup", type=Path, help="JSON setup (default: drift's cache, SmolLM2's preset)")
    parser.add_argument("--model", type=Path, default=None, help="default: drift's converted SmolLM2")
    parser.add_argument("--stats", type=Path, default=None, help="drift's C of the layer (safetensors)")
    parser.add_argument("--layer", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--gamma", type=float, default=0.0, help="SADR's γ (0: plain ROME)")
    parser.add_argument("--flops", action="store_true", help="GFLOP per optimisation step instead")
    parser.add_argument("--threads", default="1")
    args = parser.parse_args()
    if args.serve:
        return serve(args.reference)
    if args.cases is None:
        parser.error("--cases is required unless --serve")
    setup = json.loads(args.setup.read_text()) if args.setup else default_setup(args)
    peer = Peer(args.reference, setup)
    cases = json.loads(args.cases.read_text())
    print(
        f"reference ROME: {len(cases)} cases, layer {setup['layer']}, {setup['steps']} steps, "
        f"{len(setup['prefixes'])} context templates, {torch.get_num_threads()} thread(s); "
        f"C from {setup['stats']}"
    )
    for case in cases:
        if args.flops:
            r = peer.flops(case)
            print(
                f"  {r['case_id']}: compute_v {r['gflop_2']:.1f} GFLOP at 2 passes, {r['gflop_3']:.1f} at 3: "
                f"{r['gflop_step']:.1f} GFLOP per step; {r['gflop_edit']:.1f} GFLOP per edit "
                f"({r['passes']} passes)"
            )
            continue
        r = peer.edit(case)
        loss = "—" if r["loss"] is None else f"{r['loss']:.4f}"
        print(
            f"  {r['case_id']}: {r['seconds']:.2f} s/edit   ‖ΔW‖/‖W‖ {r['rel_dw']:.4f}   "
            f"final loss {loss}   passes {r['passes']}"
        )


if __name__ == "__main__":
    main()
