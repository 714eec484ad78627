"""The reward sources a run can score completions with, each declared once as a
:class:`RewardType`: its arguments (with help and bounds, as ``hp()`` gives hyperparameters),
how it scores, and, for a model-backed source, how the worker loads its model.

The launch form's inputs, API validation, ``GET /api/rewards``, the worker's loading, the
registry's ownership checks and the "what uses this checkpoint" lists all read these
declarations. This module imports no torch (a model-backed type names its loader by module
path; the worker imports it). Rule-based scores are plain Python:
``score(prompts, completions, rows, args) -> list[float]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from training.config import ConfigError, coerce_value

PATTERN_MAX_CHARS = 2000
MAX_REWARD_SOURCES = 16
WEIGHT_MAX = 1e6  # a weight beyond this overflows float32 rewards into infinities
TEXT_MAX_CHARS = 200

ScoreFn = Callable[[Sequence[str], Sequence[str], Sequence[Mapping[str, Any]],
                    Mapping[str, Any]], list[float]]
MetricsFn = Callable[[Sequence[str], Sequence[str], Sequence[Mapping[str, Any]],
                      Mapping[str, Any]], dict[str, float]]


@dataclass(frozen=True)
class RewardArg:
    """One argument of a reward type. ``kind``: ``int`` or ``float`` (bounded by ``lo`` and
    ``hi``), ``text``, ``regex`` (RE2, checked), ``choice`` (one of ``choices``), ``language``
    (a code :mod:`training.languages` knows, or ``@column``), ``column``
    (one of the data set's columns) or ``model`` (a registry id of a model of the type's
    ``model_kinds``). No ``default``: the argument is required."""

    name: str
    kind: str
    help: str
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    placeholder: str = ""
    choices: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is None

    def as_json(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": self.kind, "help": self.help,
               "default": self.default, "required": self.required, "lo": self.lo,
               "hi": self.hi}
        return out | ({"choices": list(self.choices)} if self.choices else {})


@dataclass(frozen=True)
class RewardType:
    id: str
    title: str
    help: str
    args: tuple[RewardArg, ...] = ()
    score: ScoreFn | None = None
    """Rule-based: the scores of a batch. None for a model-backed type (``load``)."""
    load: str | None = None
    """Model-backed: ``"module:callable"``, called as ``callable(path, device=...)`` on the
    worker; the result scores ``(row prompts, completions) -> list[float]``."""
    model_kinds: tuple[str, ...] = ()
    critic_backbone: bool = False
    """PPO may start its critic from this source's model (``critic_init: reward``)."""
    metrics: MetricsFn | None = None
    """Rule-based: what else a step's batch says, logged as ``reward/<source>/<key>``."""
    order: int = 100

    @property
    def model_arg(self) -> RewardArg | None:
        return next((a for a in self.args if a.kind == "model"), None)

    def as_json(self) -> dict[str, Any]:
        return {"type": self.id, "title": self.title, "help": self.help,
                "args": [a.as_json() for a in self.args], "model_kinds": list(self.model_kinds),
                "weight": {"default": 1.0, "lo": -WEIGHT_MAX, "hi": WEIGHT_MAX}}


_REGISTRY: dict[str, RewardType] = {}


def register_reward_type(reward_type: RewardType) -> RewardType:
    if reward_type.id in _REGISTRY and _REGISTRY[reward_type.id] is not reward_type:
        raise ValueError(f"reward type {reward_type.id!r} is declared twice")
    _REGISTRY[reward_type.id] = reward_type
    return reward_type


def unregister_reward_type(type_id: str) -> None:
    _REGISTRY.pop(type_id, None)


def reward_types() -> list[RewardType]:
    return sorted(_REGISTRY.values(), key=lambda t: (t.order, t.id))


def get_reward_type(type_id: str) -> RewardType | None:
    return _REGISTRY.get(type_id)


# --- validation ---

def compile_reward_pattern(pattern: str) -> Any:
    """A user's regex, compiled by RE2 (google-re2): matching takes time linear in the text
    for every pattern, so no pattern (``(a+)+$``, ``(.*)*ZZZ``) can hang a worker the way
    backtracking engines such as Python's ``re`` do. The price is RE2's syntax: no
    backreferences and no lookarounds. Raises ValueError with RE2's reason."""
    options = re2.Options()
    options.dot_nl = True  # '.' spans lines, as re.DOTALL
    options.log_errors = False  # the reason comes back in the exception
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", errors="replace")
        raise ValueError(str(reason)) from None
    except UnicodeEncodeError:
        raise ValueError("the pattern is not valid Unicode text") from None


def _clean_arg(arg: RewardArg, value: Any, columns: list[str] | None) -> Any:
    """The argument's value, or ValueError saying what is wrong with it."""
    if arg.kind in ("int", "float"):
        if isinstance(value, str) or isinstance(value, bool):
            raise ValueError("must be a number" if arg.kind == "float" else
                             "must be a whole number")
        return coerce_value({"lo": arg.lo, "hi": arg.hi}, int if arg.kind == "int" else float,
                            value)
    if not isinstance(value, str) or not value:
        raise ValueError("must be text")
    if arg.kind == "choice":
        if value not in arg.choices:
            raise ValueError("one of " + ", ".join(arg.choices))
        return value
    if arg.kind == "language":
        if len(value) > TEXT_MAX_CHARS:
            raise ValueError(f"at most {TEXT_MAX_CHARS} characters")
        if value.startswith("@") and columns is not None and value[1:] not in columns:
            raise ValueError("not a column of the data set (" + ", ".join(columns) + ")")
        return _language_arg(value)
    if arg.kind == "regex":
        if len(value) > PATTERN_MAX_CHARS:
            raise ValueError(f"at most {PATTERN_MAX_CHARS} characters")
        try:
            compile_reward_pattern(value)
        except ValueError as exc:
            raise ValueError(f"not a valid regular expression ({exc}); patterns use RE2 "
                             "syntax, which has no backreferences or lookarounds") from None
    elif len(value) > TEXT_MAX_CHARS:
        raise ValueError(f"at most {TEXT_MAX_CHARS} characters")
    if arg.kind == "column" and columns is not None and value not in columns:
        raise ValueError("not a column of the data set (" + ", ".join(columns) + ")")
    return value


def _weight(source: Mapping[str, Any]) -> float:
    weight = source.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
            not math.isfinite(weight) or abs(weight) > WEIGHT_MAX:
        raise ValueError(f"weight must be a finite number from -{WEIGHT_MAX:g} to {WEIGHT_MAX:g}")
    return float(weight)


def validate_source(source: Any, *, columns: list[str] | None = None) -> dict[str, Any]:
    """One reward source as stored (``{"type", "weight", <args>}``), or ValueError naming what
    to change. ``columns``: the data set's, for ``column`` arguments."""
    ids = ", ".join(t.id for t in reward_types())
    kind = get_reward_type(str(source.get("type"))) if isinstance(source, dict) else None
    if kind is None:
        raise ValueError("type must be one of " + ids)
    names = {a.name for a in kind.args}
    unknown = sorted(set(source) - names - {"type", "weight"})
    if unknown:
        raise ValueError("unknown field " + ", ".join(unknown))
    clean: dict[str, Any] = {"type": kind.id, "weight": _weight(source)}
    for arg in kind.args:
        value = source.get(arg.name, arg.default)
        if value is None:
            raise ValueError(f"{kind.id} needs {arg.name}, {arg.help}")
        try:
            clean[arg.name] = _clean_arg(arg, value, columns)
        except ValueError as exc:
            raise ValueError(f"{kind.id} needs {arg.name}, {arg.help} ({exc})") from None
    return clean


def validate_rewards(rewards: Any, *, columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Check a list of reward sources; ConfigError names each bad one (``rewards[i]``)."""
    if not isinstance(rewards, list) or not rewards:
        raise ConfigError({"rewards": "give at least one reward source, e.g. "
                                      '[{"type": "length", "target": 200}]'})
    if len(rewards) > MAX_REWARD_SOURCES:
        raise ConfigError({"rewards": f"give at most {MAX_REWARD_SOURCES} reward sources"})
    errors: dict[str, str] = {}
    clean = []
    for i, source in enumerate(rewards):
        try:
            clean.append(validate_source(source, columns=columns))
        except ValueError as exc:
            errors[f"rewards[{i}]"] = str(exc)
    if errors:
        raise ConfigError(errors)
    return clean


def reward_source_names(rewards: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metric names of the sources: the type, numbered when a type occurs more than once."""
    counts: dict[str, int] = {}
    for r in rewards:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    seen: dict[str, int] = {}
    names = []
    for r in rewards:
        seen[r["type"]] = seen.get(r["type"], 0) + 1
        names.append(r["type"] if counts[r["type"]] == 1 else f"{r['type']}_{seen[r['type']]}")
    return names


def model_references(rewards: Sequence[Mapping[str, Any]]) -> list[tuple[int, str, RewardType]]:
    """(index, model id, type) of every source that names a model."""
    out = []
    for i, source in enumerate(rewards):
        kind = get_reward_type(source.get("type", ""))
        arg = kind.model_arg if kind else None
        if kind and arg and isinstance(source.get(arg.name), str):
            out.append((i, source[arg.name], kind))
    return out


# --- the built-in types ---

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def length_score(prompts: Sequence[str], completions: Sequence[str],
                 rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]) -> list[float]:
    """``-abs(target - len(completion))`` in characters: 0 at the target, lower either side."""
    return [-float(abs(int(args["target"]) - len(c))) for c in completions]


def regex_score(prompts: Sequence[str], completions: Sequence[str],
                rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]) -> list[float]:
    """1 when the whole completion (stripped) matches ``pattern`` (``.`` spans lines), else 0.
    RE2 matches in linear time, so a long completion cannot stall the step."""
    compiled = compile_reward_pattern(str(args["pattern"]))
    return [1.0 if compiled.fullmatch(c.strip()) else 0.0 for c in completions]


def extract_answer(completion: str) -> str:
    """The text inside the last ``<answer>...</answer>``, or the whole completion."""
    found = _ANSWER.findall(completion)
    return (found[-1] if found else completion).strip()


def exact_match_score(prompts: Sequence[str], completions: Sequence[str],
                      rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]
                      ) -> list[float]:
    """1 when the answer (see :func:`extract_answer`) equals the row's reference, else 0; a
    missing reference scores 0."""
    answers = [r.get(args.get("column", "answer")) for r in rows]
    return [1.0 if a is not None and extract_answer(c) == str(a).strip() else 0.0
            for c, a in zip(completions, answers, strict=True)]


LENGTH = register_reward_type(RewardType(
    id="length", title="Length target", order=10,
    help="-abs(target - characters): 0 at the target, lower either side.",
    args=(RewardArg("target", "int", "a whole number of characters (0 to 1000000)", lo=0,
                    hi=1_000_000, placeholder="200"),),
    score=length_score))
REGEX = register_reward_type(RewardType(
    id="regex", title="Format regex", order=20,
    help="1 when the whole completion matches the pattern (RE2 syntax, '.' spans lines).",
    args=(RewardArg("pattern", "regex", f"a regular expression of at most {PATTERN_MAX_CHARS} "
                    "characters", placeholder="^<think>.*?</think><answer>.*?</answer>$"),),
    score=regex_score))
EXACT_MATCH = register_reward_type(RewardType(
    id="exact_match", title="Exact match", order=30,
    help="1 when the answer (inside <answer> tags if present) equals the row's column.",
    args=(RewardArg("column", "column", "one of the data set's columns", default="answer"),),
    score=exact_match_score))
REWARD_MODEL = register_reward_type(RewardType(
    id="reward_model", title="Reward model", order=40,
    help="A fitted reward model's score of each completion.",
    args=(RewardArg("model", "model", "the id of a fitted reward model (GET /api/models)"),),
    load="training.reward_scorer:RewardModelScorer", model_kinds=("reward",),
    critic_backbone=True))


# --- the rewards DeepSeek-R1 trains with: format and whether code compiles ---

# Each preset: the pattern a whole completion must match (RE2: linear time whatever the text).
FORMAT_PRESETS: dict[str, str] = {
    # R1's: reasoning in <think>, then the answer in <answer>
    "think_answer": r"^<think>.*</think>\s*<answer>.*</answer>$",
    # the final answer in \boxed{...}, as maths data sets grade it
    "boxed": r"^.*\\boxed\{.+\}.*$",
    # a fenced code block (exactly one: checked by counting fences)
    "code_block": r"^[^`]*```[^\n`]*\n.*```[^`]*$",
}
R1_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _format_partial(preset: str, text: str) -> float:
    """Partial credit where the form is not met: R1's tags 0.25 each when present exactly
    once; a code block among others 0.5; \\boxed is all or nothing."""
    if preset == "think_answer":
        return sum(text.count(tag) == 1 for tag in R1_TAGS) / len(R1_TAGS)
    if preset == "code_block":
        return 0.5 if text.count("```") >= 2 else 0.0
    return 0.0


def _marks_once(preset: str, text: str) -> bool:
    """Each of R1's tags once; one code block (two fences)."""
    if preset == "think_answer":
        return all(text.count(tag) == 1 for tag in R1_TAGS)
    if preset == "code_block":
        return text.count("```") == 2
    return True


def format_score(prompts: Sequence[str], completions: Sequence[str],
                 rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]) -> list[float]:
    """1 when the completion has the preset's form, else 0 (or, with ``partial``, a share)."""
    preset = str(args["preset"])
    compiled = compile_reward_pattern(FORMAT_PRESETS[preset])
    partial = args.get("partial") == "yes"
    out = []
    for completion in completions:
        text = completion.strip()
        whole = compiled.fullmatch(text) is not None and _marks_once(preset, text)
        out.append(1.0 if whole else _format_partial(preset, text) if partial else 0.0)
    return out


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
CODE_MAX_CHARS = 100_000


def first_code_block(completion: str) -> str | None:
    """The first fenced block's code (a ``python`` block, or one with no language), or None."""
    for language, code in _FENCE.findall(completion[:CODE_MAX_CHARS]):
        if language.lower() in ("", "python", "py", "python3"):
            return code
    return None


def compiles(code: str) -> bool:
    """Whether ``code`` parses and compiles as Python. Nothing runs: ``compile`` only builds
    bytecode, and CPython's constant folding refuses to build huge values (``9**9**9``,
    ``'a' * 10**9`` stay unevaluated), so no text can make this take long."""
    try:
        compile(code, "<completion>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True


def code_compiles_score(prompts: Sequence[str], completions: Sequence[str],
                        rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]
                        ) -> list[float]:
    """1 when the completion's first Python block compiles, 0 when it does not or is missing
    or empty."""
    out = []
    for completion in completions:
        code = first_code_block(completion)
        out.append(1.0 if code is not None and code.strip() and compiles(code) else 0.0)
    return out


FORMAT = register_reward_type(RewardType(
    id="format", title="Format preset", order=25,
    help="1 when the completion has the preset's form: think_answer is R1's "
         "<think>...</think><answer>...</answer>, boxed puts the answer in \\boxed{}, "
         "code_block is one fenced block; partial gives a share for each mark present.",
    args=(RewardArg("preset", "choice", "the form to reward", default="think_answer",
                    choices=tuple(FORMAT_PRESETS)),
          RewardArg("partial", "choice", "partial credit for each mark present",
                    default="no", choices=("no", "yes"))),
    score=format_score))
CODE_COMPILES = register_reward_type(RewardType(
    id="code_compiles", title="Code compiles", order=35,
    help="1 when the completion's first Python code block parses and compiles (it is never "
         "run), 0 otherwise or without a block.",
    score=code_compiles_score))


# --- maths: the final answer against the row's, by symbolic equivalence ---

def math_score(prompts: Sequence[str], completions: Sequence[str],
               rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]) -> list[float]:
    """1 when the completion's final answer is the row's answer by symbolic equivalence
    (:mod:`training.math_answers`, each pair within its time limit), else 0; no answer or no
    reference scores 0."""
    from training.math_answers import checker, final_answer, reference_answer

    check = checker()
    out = []
    for completion, row in zip(completions, rows, strict=True):
        answer = final_answer(completion)
        gold = reference_answer(row.get(str(args.get("column", "answer"))))
        out.append(1.0 if answer and gold and check.equivalent(gold, answer) else 0.0)
    return out


def math_metrics(prompts: Sequence[str], completions: Sequence[str],
                 rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]
                 ) -> dict[str, float]:
    """The share of completions that give no answer at all (no box, tag or number)."""
    from training.math_answers import final_answer

    if not completions:
        return {}
    missing = sum(final_answer(c) is None for c in completions)
    return {"no_answer_frac": missing / len(completions)}


MATH = register_reward_type(RewardType(
    id="math", title="Maths answer", order=28,
    help="1 when the final answer (the last \\boxed{}, else <answer>, else the last number) "
         "equals the row's answer symbolically (1/2 = 0.5 = \\frac{1}{2}; GSM8K's '#### 42' "
         "read), by math-verify, each pair within 5 s.",
    args=(RewardArg("column", "column", "the column with the reference answer",
                    default="answer"),),
    score=math_score, metrics=math_metrics))


# --- language consistency ---

def language_score(prompts: Sequence[str], completions: Sequence[str],
                   rows: Sequence[Mapping[str, Any]], args: Mapping[str, Any]) -> list[float]:
    """The share (0 to 1) of each completion written in the target language: a fixed code, or
    with ``@column`` the row's."""
    from training.languages import share_in

    target = str(args["language"])
    out = []
    for completion, row in zip(completions, rows, strict=True):
        language = str(row.get(target[1:], "")).strip().lower() if target.startswith("@") \
            else target
        out.append(share_in(completion, language) if language else 0.0)
    return out


def _language_arg(value: str) -> str:
    from training.languages import supported

    if value.startswith("@") or value in supported():
        return value
    raise ValueError("a language code (" + ", ".join(supported()) + ") or @column")


LANGUAGE = register_reward_type(RewardType(
    id="language", title="Language consistency", order=32,
    help="The share of the completion written in the language (R1's language-consistency "
         "reward), judged sentence by sentence: a code such as en or zh, or @column for the "
         "row's.",
    args=(RewardArg("language", "language", "a language code such as en, zh, fr, or @column",
                    default="en", placeholder="en"),),
    score=language_score))


JUDGE = register_reward_type(RewardType(
    id="judge", title="Judge model", order=45,
    help="A causal LM reads each answer through the template and replies with a score from 1 "
         "to 10, the reward; a reply without one is a counted miss (0).",
    args=(RewardArg("model", "model", "the id of a causal LM (GET /api/models)"),
          RewardArg("template", "text", "the judge's prompt, with {prompt} and {completion}",
                    default="Rate the answer from 1 to 10. Question: {prompt} Answer: "
                            "{completion} Score:"),
          RewardArg("batch_size", "int", "completions judged at once (1 to 64)", default=8,
                    lo=1, hi=64)),
    load="training.judge:JudgeScorer", model_kinds=("policy",)))
