"""What an evaluation measures and how, in one frozen record: :class:`EvalSpec`, the one settings
argument of :func:`drift.evaluation.evaluate.evaluate`.

A spec is checked when it is made, so a bad form or size is named before any model runs; it is
immutable (``dataclasses.replace(spec, fluency=False)`` gives a changed copy), and its ``repr``
shows only what differs from the defaults.

Example:
    >>> EvalSpec()
    EvalSpec()
    >>> spec = EvalSpec(fluency=False, scoring="product", ppl_texts=["Paris is in France.", "Rome."])
    >>> spec
    EvalSpec(fluency=False, ppl_texts=<2 texts>, scoring='product')
    >>> spec.ppl_texts, spec.fluency_form is None
    (('Paris is in France.', 'Rome.'), True)
    >>> EvalSpec(fluency=True).fluency                     # True: the reference's form
    'reference'
    >>> EvalSpec(fluency="long")
    Traceback (most recent call last):
    ...
    ValueError: EvalSpec fluency must be False or one of ('reference', 'short'), got 'long'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from drift.evaluation.metrics import (
    DEFAULT_SCORING,
    FLUENCY_FORMS,
    FluencyForm,
    ReferenceTexts,
    check_forms,
    check_scoring,
)


@dataclass(frozen=True, repr=False)
class EvalSpec:
    """The settings of one evaluation (every field optional; the defaults are the reference's).

    Attributes:
        fluency: generate text from each case's generation prompts (seeded top-k sampling) and
            report FL: ``"reference"`` (or ``True``) as the reference does, from every prompt,
            each text 100 tokens in all, n-grams of Treebank words; ``"short"``, 2 prompts, 40
            new tokens, words split at whitespace (:data:`drift.evaluation.metrics.FLUENCY_FORMS`);
            ``False`` (or ``None``) none.
        gen_prompts, gen_tokens: override the fluency form's number of prompts and its length
            (new tokens per prompt).
        ppl_texts: texts for perplexity (PPL), measured per case on the edited model, or once
            for an unedited one; ``ppl_form`` says how (:func:`drift.evaluation.evaluate.perplexity`).
        res: ``"reference"`` scores each reasoning answer against o_true (RES), ``"accuracy"``
            its teacher-forced token accuracy.
        references: texts about o_edit (:func:`drift.evaluation.metrics.load_reference_texts`):
            with fluency on, RefS, the TF-IDF similarity of a case's generations with them.
        scoring: ``"mean"`` (per-token mean log-probability, the reference's) or ``"product"``
            (the whole target's probability); see :mod:`drift.evaluation.metrics`.
        seed: the sampling seed of the generations (each case's prompts sampled on their own).
        batch_cases: unedited cases scored together (their prompts in padded batches).
        batch_size: prompts per forward pass.
        edit_batch: with an editor that can compute several cases' edits at once
            (:class:`drift.editors.Applied`), how many: their target vectors are optimised in
            one batch, then each case's edit is applied, scored and removed in turn. ``None``: as
            many as the device's memory holds on a GPU, one on a CPU
            (:func:`drift.editors.target.auto_edit_batch`); 1: one at a time.
    """

    fluency: str | bool = "reference"
    gen_prompts: int | None = None
    gen_tokens: int | None = None
    ppl_texts: tuple[str, ...] | None = None
    ppl_form: str = "reference"
    res: str = "reference"
    references: ReferenceTexts | None = field(default=None, compare=False)
    scoring: str = DEFAULT_SCORING
    seed: int = 0
    batch_cases: int = 16
    batch_size: int = 32
    edit_batch: int | None = None

    def __post_init__(self) -> None:
        fluency = "reference" if self.fluency is True else (self.fluency or False)
        if fluency is not False and fluency not in FLUENCY_FORMS:
            raise ValueError(
                f"EvalSpec fluency must be False or one of {tuple(FLUENCY_FORMS)}, got {self.fluency!r}"
            )
        object.__setattr__(self, "fluency", fluency)
        object.__setattr__(self, "ppl_texts", _texts(self.ppl_texts))
        try:
            check_scoring(self.scoring)
            check_forms(ppl=self.ppl_form, res=self.res)
        except ValueError as e:
            raise ValueError(f"EvalSpec {e}") from None
        for name, least in (("gen_prompts", 0), ("gen_tokens", 0), ("batch_cases", 1), ("batch_size", 1)):
            _whole(name, getattr(self, name), least, optional=name.startswith("gen_"))
        _whole("edit_batch", self.edit_batch, 1, optional=True)
        _whole("seed", self.seed, None, optional=False)
        if self.references is not None and not isinstance(self.references, ReferenceTexts):
            raise TypeError(
                "EvalSpec references must be the ReferenceTexts of "
                f"drift.evaluation.metrics.load_reference_texts, got {type(self.references).__name__}"
            )

    @property
    def fluency_form(self) -> FluencyForm | None:
        """How FL's texts are made, the overrides applied (``None``: no fluency).

        >>> EvalSpec(fluency="short", gen_tokens=8).fluency_form.new_tokens
        8
        >>> EvalSpec(gen_tokens=8).fluency_form.length is None   # new tokens instead of a length
        True
        """
        if not self.fluency:
            return None
        form = FLUENCY_FORMS[self.fluency]
        new_tokens = self.gen_tokens if self.gen_tokens is not None else form.new_tokens
        return dataclasses.replace(
            form,
            prompts=self.gen_prompts if self.gen_prompts is not None else form.prompts,
            new_tokens=new_tokens,
            length=form.length if new_tokens is None else None,
        )

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if f.name == "ppl_texts":
                shown.append(f"ppl_texts=<{len(value)} texts>")
            elif f.name == "references":
                shown.append(f"references=<texts about {len(value.texts)} objects>")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"EvalSpec({', '.join(shown)})"


def _texts(texts) -> tuple[str, ...] | None:
    """Perplexity texts as a tuple (``None`` for none or an empty list); a ``ValueError`` for a
    lone string or an entry that is not a string."""
    if texts is None or (not isinstance(texts, str) and len(texts) == 0):
        return None
    if isinstance(texts, str):
        raise ValueError("EvalSpec ppl_texts must be a list of texts, got one string")
    texts = tuple(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"EvalSpec ppl_texts[{bad}] must be a string, got {type(texts[bad]).__name__}")
    return texts


def _whole(name: str, value, least: int | None, *, optional: bool) -> None:
    """A ``ValueError`` naming the field unless ``value`` is a whole number ≥ ``least`` (or
    ``None`` where optional)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or (least is not None and value < least):
        need = "a whole number" + ("" if least is None else f" >= {least}") + (" or None" if optional else "")
        raise ValueError(f"EvalSpec {name} must be {need}, got {value!r}")
