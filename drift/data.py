"""Edit cases: the ``EditCase`` record and loaders for the two CounterFact schemas.

An edit request is (subject s, relation prompt r, o_true → o_edit). Each case carries the prompts
of every evaluation task it has data for; a task whose field is absent is ``None`` and skipped
by the metrics, never faked.

Two file schemas are read (detected per case):

- the merged CounterFact + WikiData schema: ``requested_rewrite{prompt, subject, target_new,
  target_true}``, ``rewrite``, ``p-paraphrase``, ``p-reasoning``, ``p-subject_alias``,
  ``l-neighbor``, ``l-relation``, ``o-commonsense``, ``generation``;
- the original CounterFact schema: ``requested_rewrite{prompt with "{}", subject,
  target_new{str}, target_true{str}}``, ``paraphrase_prompts``, ``neighborhood_prompts``,
  ``generation_prompts``.

A malformed file or case raises :class:`CaseError` naming the case and the field.

Example:
    >>> cases = load_cases("builtin")
    >>> c = cases[0]
    >>> c.subject in c.prompt and c.o_true != c.o_edit
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

BUILTIN = "builtin"


class CaseError(ValueError):
    """A case file or a case in it is malformed; the message names the case and the field."""


# the main paper's 1,178 dev cases (CounterFact + WikiData), where the project's shared folder sits
# beside a checkout; the commands that default to it fall back to the built-in cases elsewhere
DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact-merged-dev.json"


def dev_set_or_builtin() -> str:
    """The dev set's path when it is there, else ``"builtin"``."""
    return str(DEV_SET) if DEV_SET.is_file() else "builtin"


@dataclass(frozen=True)
class Probe:
    """A prompt and the answer the model should give to it."""

    prompt: str
    answer: str


@dataclass(frozen=True)
class Commonsense:
    """A two-choice commonsense item: the model should prefer ``right`` over ``wrong``."""

    prompt: str
    right: str
    wrong: str


@dataclass(frozen=True)
class EditCase:
    """One edit request with its evaluation prompts (``None``: the data has no such task)."""

    case_id: str
    subject: str
    prompt: str  # the rewrite prompt; contains the subject, ends before the object
    o_true: str
    o_edit: str
    relation_id: str | None = None
    rewrite: tuple[str, ...] = ()  # efficacy prompts (the rewrite prompt at least)
    paraphrase: tuple[str, ...] | None = None  # answer: o_edit
    neighborhood: tuple[Probe, ...] | None = None  # other subjects, same relation, answer o_true
    relation: tuple[Probe, ...] | None = None  # same subject, other relations, their true answers
    reasoning: tuple[Probe, ...] | None = None  # multi-hop prompts answered in the edited world
    subject_alias: tuple[Probe, ...] | None = None  # the subject under another name; answer o_edit
    commonsense: Commonsense | None = None
    generation: tuple[str, ...] | None = None
    o_edit_id: str | None = None  # o_edit's Wikidata id (``target_new_id``): keys its reference texts
    # where the subject sits in ``prompt`` when the case came from a template ("{}"): the slot's
    # character offset, so an edit reads the subject there even when the subject's text occurs
    # again in the prompt ("{}, not Paris Hilton, is the capital of" with subject "Paris")
    subject_start: int | None = None

    def __repr__(self) -> str:
        """``EditCase('0': 'The Eiffel Tower is located in the city of' Paris -> Rome, subject
        'Eiffel Tower'; paraphrase 2, neighborhood 10, …)``: the fact and how many prompts each
        task has (the prompts themselves are the fields)."""
        tasks = (
            "rewrite",
            "paraphrase",
            "neighborhood",
            "relation",
            "reasoning",
            "subject_alias",
            "generation",
        )
        counts = [f"{t} {len(getattr(self, t))}" for t in tasks if getattr(self, t)]
        if self.commonsense is not None:
            counts.append("commonsense 1")
        return (
            f"EditCase({self.case_id!r}: {self.prompt!r} {self.o_true} -> {self.o_edit}, "
            f"subject {self.subject!r}; {', '.join(counts) or 'no task prompts'})"
        )

    def subject_at(self, text: str, offset: int = 0) -> int | None:
        """The character of ``text`` where the subject's template slot lies, for a ``text`` that
        holds this case's prompt at ``offset`` (a prefix before it, a test prompt after it);
        ``None`` when the case had no template or ``text`` does not hold its prompt there (then
        the subject's last occurrence is meant).

        >>> case = EditCase.simple("{}, not Paris Hilton, is the capital of", "Paris", "Rome", "France")
        >>> case.prompt, case.subject_at("Hi. " + case.prompt, 4)
        ('Paris, not Paris Hilton, is the capital of', 4)
        """
        s = self.subject_start
        if s is None or text[offset : offset + len(self.prompt)] != self.prompt:
            return None
        if self.prompt[s : s + len(self.subject)] != self.subject:  # a case changed by hand
            return None
        return offset + s

    @classmethod
    def simple(
        cls,
        prompt: str,
        subject: str,
        target: str,
        target_true: str,
        *,
        case_id: str = "custom",
        neighbours: dict[str, str] | None = None,
    ) -> "EditCase":
        """One fact to edit, without the CounterFact nesting: ``prompt`` (containing ``subject``,
        ending before the object) now answers ``target`` instead of ``target_true``.
        ``neighbours``: optional ``{prompt: its true answer}`` of other subjects (NS and DNS).
        Checked as a loaded case is (a ``CaseError`` names the bad field).

        >>> EditCase.simple("The Eiffel Tower is in", "Eiffel Tower", "Rome", "Paris").edit_sentence
        'The Eiffel Tower is in Rome.'
        """
        raw = {
            "case_id": case_id,
            "rewrite": {"prompts": [prompt], "targets": [target]},
            "requested_rewrite": {
                "prompt": prompt,
                "subject": subject,
                "target_new": target,
                "target_true": target_true,
            },
        }
        if neighbours:
            raw["l-neighbor"] = {"prompts": list(neighbours), "targets": list(neighbours.values())}
        return parse_case(raw, source="EditCase.simple")

    @property
    def edit_sentence(self) -> str:
        """The edit stated as a sentence, prepended to prompts in the distracting tasks."""
        return f"{self.prompt} {self.o_edit}."

    @property
    def distracting(self) -> tuple[Probe, ...] | None:
        """Neighbourhood probes with the edit sentence in front (the DNS task)."""
        if self.neighborhood is None:
            return None
        return tuple(Probe(f"{self.edit_sentence} {p.prompt}", p.answer) for p in self.neighborhood)


def load_cases(source: str | Path = BUILTIN, *, limit: int | None = None) -> list[EditCase]:
    """Load cases from ``"builtin"`` (drift's own set) or a JSON file in either schema."""
    if str(source) == BUILTIN:
        text = resources.files("drift").joinpath("cases/builtin.json").read_text()
        name = "drift builtin cases"
    else:
        path = Path(source)
        if path.is_dir():
            raise CaseError(f"case file {path} is a folder; give a CounterFact-format JSON file")
        if not path.is_file():
            raise CaseError(f"case file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise CaseError(f"case file {path} is not UTF-8 text (byte {e.start}: {e.reason})") from e
        name = str(path)
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise CaseError(f"{name} is not valid JSON: {e}") from e
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise CaseError(f"{name} must hold a list of cases, got {type(raw).__name__}")
    if not raw:
        raise CaseError(f"{name} holds no cases (empty list)")
    if limit is not None:
        if limit < 1:
            raise CaseError(f"limit must be at least 1, got {limit}")
        raw = raw[:limit]
    cases = [parse_case(r, index=i, source=name) for i, r in enumerate(raw)]
    first: dict[str, int] = {}
    for i, c in enumerate(cases):
        if c.case_id in first:
            raise CaseError(
                f"{name}: cases #{first[c.case_id]} and #{i} share case_id {c.case_id!r}; "
                "results are keyed by it, so one would be lost"
            )
        first[c.case_id] = i
    return cases


def parse_case(raw: Any, *, index: int = 0, source: str = "case") -> EditCase:
    """Parse one case dict (either schema) into an ``EditCase``."""
    where = f"{source}, case #{index}"
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: a case must be a JSON object, got {type(raw).__name__}")
    case_id = str(raw.get("case_id", index))
    where = f"{source}, case {case_id}"
    fields = _rewrite_fields(_get(raw, "requested_rewrite", dict, where), case_id, where)
    if "rewrite" in raw:  # merged schema
        fields.update(_merged_tasks(raw, fields["o_edit"], where))
    else:  # original CounterFact schema
        fields.update(_counterfact_tasks(raw, fields["prompt"], fields["o_true"], where))
    if not fields["rewrite"]:
        fields["rewrite"] = (fields["prompt"],)
    return EditCase(**fields)


def _rewrite_fields(rr: dict, case_id: str, where: str) -> dict[str, Any]:
    """The edit itself, from a case's ``requested_rewrite`` block: subject, prompt (a template's
    ``{}`` filled with the subject, its slot kept), both objects, relation and object ids."""
    subject = _text(
        _get(rr, "subject", str, where, "requested_rewrite.subject"), where, "requested_rewrite.subject"
    )
    prompt = _get(rr, "prompt", str, where, "requested_rewrite.prompt")
    subject_start = None
    if "{}" in prompt:  # a template: the subject goes in its one slot, and is read there
        if prompt.count("{}") > 1:
            raise CaseError(
                f"{where}: field requested_rewrite.prompt {prompt!r} has {prompt.count('{}')} '{{}}' "
                "slots; a template holds the subject once"
            )
        subject_start = prompt.index("{}")
        prompt = prompt.replace("{}", subject)
    o_edit = _target(rr, "target_new", where)
    o_true = _target(rr, "target_true", where)
    if subject not in prompt:
        raise CaseError(
            f"{where}: field requested_rewrite.subject {subject!r} is not in the prompt {prompt!r}"
        )
    if o_edit.strip().lower() == o_true.strip().lower():
        raise CaseError(f"{where}: target_new equals target_true ({o_edit!r}); nothing to edit")
    return dict(
        case_id=case_id,
        subject=subject,
        prompt=prompt,
        o_true=o_true,
        o_edit=o_edit,
        relation_id=rr.get("relation_id") if isinstance(rr.get("relation_id"), str) else None,
        o_edit_id=_target_id(rr),
        subject_start=subject_start,
    )


def _merged_tasks(raw: dict, o_edit: str, where: str) -> dict[str, Any]:
    """The task blocks of a case in the merged schema (``rewrite``, ``p-paraphrase``, ...)."""
    fields: dict[str, Any] = {"rewrite": tuple(_prompts(raw, "rewrite", where))}
    # A task block with no prompts (the dev set has many) is an absent task, not an error.
    for key, name in (("p-paraphrase", "paraphrase"), ("generation", "generation")):
        if key in raw and _has_prompts(raw, key, where):
            fields[name] = tuple(_prompts(raw, key, where))
    if "p-subject_alias" in raw and _has_prompts(raw, "p-subject_alias", where):
        # each prompt's target is o_edit, sometimes under another name ("cisgender female")
        block = _get(raw, "p-subject_alias", dict, where)
        if block.get("targets"):
            fields["subject_alias"] = _probes(raw, "p-subject_alias", where)
        else:
            prompts = _prompts(raw, "p-subject_alias", where)
            fields["subject_alias"] = tuple(Probe(p, o_edit) for p in prompts)
    for key, name in (
        ("l-neighbor", "neighborhood"),
        ("l-relation", "relation"),
        ("p-reasoning", "reasoning"),
    ):
        if key in raw and _has_prompts(raw, key, where):
            fields[name] = _probes(raw, key, where)
    if "o-commonsense" in raw:
        oc = _get(raw, "o-commonsense", dict, where)
        fields["commonsense"] = Commonsense(
            prompt=_get(oc, "prompts", str, where, "o-commonsense.prompts"),
            right=_text(_get(oc, "right", str, where, "o-commonsense.right"), where, "o-commonsense.right"),
            wrong=_text(_get(oc, "wrong", str, where, "o-commonsense.wrong"), where, "o-commonsense.wrong"),
        )
    return fields


def _counterfact_tasks(raw: dict, prompt: str, o_true: str, where: str) -> dict[str, Any]:
    """The task blocks of a case in the original CounterFact schema (``paraphrase_prompts``, ...)."""
    fields: dict[str, Any] = {"rewrite": (prompt,)}
    if "paraphrase_prompts" in raw:
        fields["paraphrase"] = tuple(_str_list(raw, "paraphrase_prompts", where))
    if "neighborhood_prompts" in raw:
        fields["neighborhood"] = tuple(
            Probe(p, o_true) for p in _str_list(raw, "neighborhood_prompts", where)
        )
    if "generation_prompts" in raw:
        fields["generation"] = tuple(_str_list(raw, "generation_prompts", where))
    return fields


# ---- field readers: each names the case and the field it rejects ------------------------------
def _get(d: dict, key: str, typ: type, where: str, label: str | None = None) -> Any:
    label = label or key
    if key not in d:
        raise CaseError(f"{where}: missing field {label!r}")
    v = d[key]
    if not isinstance(v, typ):
        raise CaseError(f"{where}: field {label!r} must be {typ.__name__}, got {type(v).__name__}")
    return v


def _text(v: str, where: str, label: str) -> str:
    if not v.strip():
        raise CaseError(f"{where}: field {label!r} is empty")
    return v


def _target(rr: dict, key: str, where: str) -> str:
    label = f"requested_rewrite.{key}"
    if key not in rr:
        raise CaseError(f"{where}: missing field {label!r}")
    v = rr[key]
    if isinstance(v, dict):  # original schema: {"str": ..., "id": ...}
        if "str" not in v:
            raise CaseError(f"{where}: missing field {label + '.str'!r}")
        v = v["str"]
        label += ".str"
    if not isinstance(v, str):
        raise CaseError(f"{where}: field {label!r} must be str, got {type(v).__name__}")
    return _text(v, where, label)


def _target_id(rr: dict) -> str | None:
    """o_edit's id: ``target_new_id`` (merged schema) or ``target_new.id`` (original schema)."""
    v = rr.get("target_new_id")
    if v is None and isinstance(rr.get("target_new"), dict):
        v = rr["target_new"].get("id")
    return str(v) if isinstance(v, (str, int)) and str(v).strip() else None


def _str_list(d: dict, key: str, where: str, label: str | None = None) -> list[str]:
    label = label or key
    v = _get(d, key, list, where, label)
    if not v:
        raise CaseError(f"{where}: field {label!r} is an empty list")
    for i, s in enumerate(v):
        if not isinstance(s, str) or not s.strip():
            raise CaseError(f"{where}: field {label}[{i}] must be a non-empty string, got {s!r}")
    return v


def _has_prompts(raw: dict, key: str, where: str) -> bool:
    block = _get(raw, key, dict, where)
    return block.get("prompts") not in ([], "", None) or bool(block.get("targets"))


def _prompts(raw: dict, key: str, where: str) -> list[str]:
    block = _get(raw, key, dict, where)
    prompts = block.get("prompts")
    if isinstance(prompts, str):
        prompts = [prompts]
        block = {**block, "prompts": prompts}
    return _str_list(block, "prompts", where, f"{key}.prompts")


def _probes(raw: dict, key: str, where: str) -> tuple[Probe, ...]:
    block = _get(raw, key, dict, where)
    prompts = _str_list(block, "prompts", where, f"{key}.prompts")
    answers = _str_list(block, "targets", where, f"{key}.targets")
    if len(prompts) != len(answers):
        raise CaseError(f"{where}: field {key!r} has {len(prompts)} prompts but {len(answers)} targets")
    return tuple(Probe(p, a) for p, a in zip(prompts, answers))
