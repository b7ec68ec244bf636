"""Reading Sigma rule files: which files a path means, YAML, pySigma's parsing, the log sources we
evaluate, our processing pipeline. Every document ends as a parsed rule, an Unsupported or an Invalid.
Blocking (file I/O): runs off the event loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from sigma.exceptions import SigmaError, SigmaModifierError, SigmaRuleLocation, SigmaTransformationError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaRule

from amoskys.detections.sigma import pipeline as amoskys_pipeline
from amoskys.detections.sigma.fields import PROVIDED
from amoskys.detections.sigma.model import Invalid, Unsupported, rule_id

SUFFIXES = (".yml", ".yaml")
PRODUCT = "linux"

Fingerprint = tuple[tuple[str, int, int], ...]


def rule_files(paths: Sequence[Path | str]) -> tuple[list[Path], list[Invalid]]:
    """The files the paths name (a directory: its *.yml and *.yaml files, recursively, sorted), and an
    Invalid for each path that does not exist or cannot be listed."""
    files: list[Path] = []
    missing: list[Invalid] = []
    for path in map(Path, paths):
        try:
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()))
            elif path.exists():
                files.append(path)
            else:
                missing.append(Invalid(path, "no such file or directory"))
        except OSError as err:
            missing.append(Invalid(path, f"cannot be read: {err.strerror or err}"))
    return files, missing


def fingerprint(paths: Sequence[Path | str]) -> Fingerprint:
    """(path, mtime_ns, size) of every rule file the paths name: compare two to know whether to reload.
    A path that is missing counts as (path, -1, -1)."""
    files, missing = rule_files(paths)
    out: list[tuple[str, int, int]] = [(str(m.path), -1, -1) for m in missing]
    for f in files:
        try:
            st = f.stat()
        except OSError:
            out.append((str(f), -1, -1))
        else:
            out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(sorted(out))


@dataclass(slots=True)
class Parsed:
    """A rule pySigma parsed and our pipeline accepted, ready to compile."""

    rule: SigmaRule
    id: str
    path: Path
    category: str


Outcome = Parsed | Unsupported | Invalid


def load_file(path: Path, pipeline: ProcessingPipeline | None = None) -> Iterator[Outcome]:
    """Each document of one file as a Parsed rule, an Unsupported or an Invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        yield Invalid(path, f"cannot be read: {err}")
        return
    yield from load_text(text, path, pipeline)


def load_text(text: str, path: Path, pipeline: ProcessingPipeline | None = None) -> Iterator[Outcome]:
    """Each document of YAML text (read from `path`) as a Parsed rule, an Unsupported or an Invalid."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        yield Invalid(path, f"not valid YAML: {_yaml_error(err)}")
        return
    pipe = pipeline or amoskys_pipeline.build()
    for index, doc in enumerate(documents):
        if doc is None:
            continue
        yield _load_document(path, index, doc, pipe)


def _load_document(path: Path, index: int, doc: object, pipe: ProcessingPipeline) -> Outcome:
    where = f"document {index + 1}" if index else ""
    if not isinstance(doc, dict):
        return Invalid(path, _join(where, "not a Sigma rule (a YAML mapping is expected)"))
    title = str(doc.get("title") or "")
    rid = rule_id(doc.get("id"), path, index)
    if "correlation" in doc:
        return Unsupported(path, rid, title, "correlation rules are not supported")
    if "filter" in doc:
        return Unsupported(path, rid, title, "Sigma filters are not supported")
    if "action" in doc:
        return Unsupported(path, rid, title, f"collection action {doc['action']!r} is not supported")
    detection = doc.get("detection")
    condition = detection.get("condition") if isinstance(detection, dict) else None
    for cond in condition if isinstance(condition, list) else [condition]:
        if isinstance(cond, str) and "|" in cond:
            return Unsupported(path, rid, title, "aggregations in the condition ('|') are not supported")
    try:
        rule = SigmaRule.from_dict(doc, collect_errors=True, source=SigmaRuleLocation(path))
    except SigmaError as err:
        return _error(path, rid, title, where, err)
    if rule.errors:
        return _error(path, rid, title, where, rule.errors[0])
    logsource = rule.logsource
    if logsource.service:
        return Unsupported(path, rid, title, f"logsource service {logsource.service!r} is not evaluated")
    if logsource.product and logsource.product != PRODUCT:
        return Unsupported(path, rid, title, f"logsource product {logsource.product!r} is not evaluated")
    category = logsource.category or ""
    if category not in PROVIDED:
        what = f"category {category!r}" if category else "a logsource without a category"
        return Unsupported(path, rid, title, f"{what} is not evaluated (evaluated: {', '.join(PROVIDED)})")
    try:
        pipe.apply(rule)
    except SigmaTransformationError as err:
        return Unsupported(path, rid, title, _message(err))
    except SigmaError as err:
        return _error(path, rid, title, where, err)
    return Parsed(rule, rid, path, category)


def _error(path: Path, rid: str, title: str, where: str, err: SigmaError) -> Unsupported | Invalid:
    message = _message(err)
    if isinstance(err, SigmaModifierError) and message.startswith("Unknown modifier"):
        return Unsupported(path, rid, title, message.replace("Unknown modifier", "unknown modifier", 1))
    return Invalid(path, _join(where, f"not a valid Sigma rule: {message}"))


def _message(err: SigmaError) -> str:
    """The error's text without pySigma's " in <absolute path>" suffix (we name the file ourselves)."""
    return _one_line(str(err.args[0]) if err.args else type(err).__name__)


def _yaml_error(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        what = " ".join(part for part in (err.context, err.problem) if part)
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return _one_line(str(err))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _join(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message
