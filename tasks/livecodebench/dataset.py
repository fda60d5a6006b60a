"""LiveCodeBench problems: loading (hub or local file), decoding the tests, and selecting by date and kind."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness.errors import UserError
from tasks.selection import TaskSelection, select_ids

HUB_DATASET = "livecodebench/code_generation_lite"
# the hub's loading script: release_vN is cumulative over test.jsonl .. testN.jsonl
RELEASE_FILES = {f"release_v{n}": ["test.jsonl"] + [f"test{i}.jsonl" for i in range(2, n + 1)] for n in range(1, 7)}
RELEASE_FILES["release_latest"] = RELEASE_FILES["release_v6"]
# CWM's evaluation sets: the hub's release filtered on contest_date, start inclusive, end exclusive
CWM_WINDOWS = {"v5": (date(2024, 10, 1), date(2025, 2, 1)), "v6": (date(2024, 8, 1), date(2025, 5, 1))}
FIELDS = ("question_title", "question_content", "platform", "question_id", "contest_id", "contest_date",
          "starter_code", "difficulty", "public_test_cases", "private_test_cases", "metadata")


class TestCase(BaseModel):
    input: str
    output: str
    testtype: str = "stdin"  # stdin | functional


class Problem(BaseModel):
    question_id: str
    question_title: str = ""
    question_content: str
    platform: str = ""
    contest_id: str = ""
    contest_date: str = ""  # ISO
    starter_code: str = ""
    difficulty: str = ""
    public_tests: list[TestCase] = Field(default_factory=list)
    private_tests: list[TestCase] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def fn_name(self) -> str | None:
        """Functional problems (LeetCode) name the method to call; stdin problems have none."""
        return self.metadata.get("func_name") or None

    @property
    def tests(self) -> list[TestCase]:
        return self.public_tests + self.private_tests

    @property
    def day(self) -> date | None:
        try:
            return date.fromisoformat(self.contest_date[:10])
        except ValueError:
            return None


class Selection(TaskSelection):
    dataset: str | None = None  # None: the hub; else a .jsonl/.json/.parquet file, a folder of test*.jsonl, a hub id
    release: str = "release_latest"
    preset: str | None = None  # v5 / v6: CWM's set (release + contest-date window)
    split: str = "test"
    since: date | None = None  # contest_date on or after (inclusive)
    until: date | None = None  # contest_date before (exclusive), as CWM's windows
    difficulty: list[str] = Field(default_factory=list)
    platform: list[str] = Field(default_factory=list)


def release_tag(value: str | None) -> str:
    """`v5`, `5`, `release_v5` -> `release_v5`; None -> `release_latest`."""
    if not value:
        return "release_latest"
    tag = value.strip().lower()
    tag = tag if tag.startswith("release_") else f"release_v{tag.lstrip('v')}"
    if tag not in RELEASE_FILES:
        raise UserError(f"unknown --release {value!r}; use v5 or v6 (CWM's dated sets), or the hub's "
                        "whole release: release_v1..release_v6, release_latest")
    return tag


def release_window(value: str | None, since: date | str | None = None,
                   until: date | str | None = None) -> tuple[str, date | str | None, date | str | None]:
    """(hub release tag, since, until). `v5`/`v6` are CWM's sets: release_v5/v6 within CWM's date window; an
    explicit --since/--until replaces that end of the window. Other values are the hub's release, undated."""
    key = (value or "").strip().lower()
    if key in CWM_WINDOWS:
        start, end = CWM_WINDOWS[key]
        return f"release_{key}", since if since is not None else start, until if until is not None else end
    return release_tag(value), since, until


def split_list(value: list[str] | str | None) -> list[str]:
    """--difficulty easy,medium or repeated options -> ["easy", "medium"]."""
    values = [value] if isinstance(value, str) else list(value or [])
    return [part.strip() for item in values for part in item.split(",") if part.strip()]


class _StringsOnly(pickle.Unpickler):
    """The private tests are a pickled str: refuse anything that would import or call code."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a test-case pickle")


def decode_tests(value: str | list | None) -> list[TestCase]:
    """A JSON list, or (private tests) base64(zlib(pickle(JSON string))), as lcb_runner decodes them."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        cases = value
    else:
        try:
            cases = json.loads(value)
        except json.JSONDecodeError:
            try:
                raw = zlib.decompress(base64.b64decode(value))
                text = _StringsOnly(io.BytesIO(raw)).load()
                cases = json.loads(text)
            except Exception as exc:  # noqa: BLE001 - any corruption is the dataset's
                raise ValueError(f"test cases are neither JSON nor base64(zlib(pickle(JSON))): {exc}") from None
    return [TestCase.model_validate(case) for case in cases]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):  # pyarrow's JSON reader turns ISO strings into timestamps
        return value.isoformat()
    return str(value)


def decode_row(row: dict[str, Any]) -> Problem:
    missing = [name for name in ("question_id", "question_content", "public_test_cases") if name not in row]
    if missing:
        raise UserError(f"a LiveCodeBench row lacks {', '.join(missing)} (fields: {', '.join(FIELDS)})")
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata) if metadata.strip() else {}
    qid = _text(row["question_id"])
    try:
        public, private = decode_tests(row["public_test_cases"]), decode_tests(row.get("private_test_cases"))
    except ValueError as exc:
        raise UserError(f"problem {qid}: {exc}") from None
    return Problem(question_id=qid, question_title=_text(row.get("question_title")),
                   question_content=_text(row["question_content"]), platform=_text(row.get("platform")),
                   contest_id=_text(row.get("contest_id")), contest_date=_text(row.get("contest_date")),
                   starter_code=_text(row.get("starter_code")), difficulty=_text(row.get("difficulty")),
                   public_tests=public, private_tests=private, metadata=metadata)


def _load_files(files: list[str], split: str):
    import datasets

    builder = "parquet" if all(f.endswith(".parquet") for f in files) else "json"
    return datasets.load_dataset(builder, data_files={split: files}, split=split)


def _load_hub(repo: str, tag: str, split: str):
    """The hub dataset: its loading script on datasets<4, its JSONL files (the script's mapping) on datasets>=4."""
    import datasets

    if int(datasets.__version__.split(".")[0]) < 4:
        return datasets.load_dataset(repo, version_tag=tag, split=split, trust_remote_code=True)
    return _load_files([f"hf://datasets/{repo}/{name}" for name in RELEASE_FILES[tag]], split)


def load_rows(selection: Selection):
    source = selection.dataset
    path = Path(source) if source else None
    try:
        if path is not None and path.is_file():
            return _load_files([str(path)], selection.split)
        if path is not None and path.is_dir():
            files = [path / name for name in RELEASE_FILES[selection.release]]
            absent = [str(f) for f in files if not f.is_file()]
            if absent:
                raise UserError(f"{path} lacks the files of {selection.release}: {', '.join(absent)}")
            return _load_files([str(f) for f in files], selection.split)
        if path is not None and (source.startswith((".", "/", "~")) or Path(source).suffix):
            raise UserError(f"--dataset {source} does not exist")
        return _load_hub(source or HUB_DATASET, selection.release, selection.split)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the hub, the network or the file
        where = source or HUB_DATASET
        raise UserError(f"cannot load LiveCodeBench from {where} ({type(exc).__name__}: {str(exc)[:300]}); "
                        "offline, pass --dataset PATH.jsonl (the hub's schema) or a folder of its test*.jsonl") from None


def select(problems: list[Problem], selection: Selection) -> list[Problem]:
    """Named ids are taken as they are; otherwise the problems in the date window, difficulty and platform."""
    pool = problems if selection.task_ids else [p for p in problems if in_selection(p, selection)]
    by_id = {p.question_id: p for p in pool}
    return [by_id[qid] for qid in select_ids(list(by_id), selection, noun="question id")]


def in_selection(problem: Problem, selection: Selection) -> bool:
    day = problem.day
    if selection.since and (day is None or day < selection.since):
        return False
    if selection.until and (day is None or day >= selection.until):
        return False
    if selection.difficulty and problem.difficulty.lower() not in {d.lower() for d in selection.difficulty}:
        return False
    return not selection.platform or problem.platform.lower() in {p.lower() for p in selection.platform}


def load_problems(selection: Selection) -> list[Problem]:
    """Select on the light fields first; only the chosen problems' private tests (the bulk) are decoded."""
    rows = load_rows(selection)
    heavy = "private_test_cases" in rows.column_names
    light = rows.select_columns([c for c in rows.column_names if c != "private_test_cases"]) if heavy else rows
    problems, index, seen = [], {}, set()
    for position, row in enumerate(light):
        problem = decode_row({**row, "private_test_cases": None})
        if problem.question_id not in seen:  # a problem listed twice (overlapping files) counts once
            seen.add(problem.question_id)
            problems.append(problem)
            index[problem.question_id] = position
    chosen = select(problems, selection)
    if heavy:
        for problem in chosen:
            try:
                problem.private_tests = decode_tests(rows[index[problem.question_id]]["private_test_cases"])
            except ValueError as exc:
                raise UserError(f"problem {problem.question_id}: {exc}") from None
    return chosen
