"""Which SWE-bench instances a run uses: a hub dataset, a local .json/.jsonl/.parquet file, or a 5.x task repo.

Hub names and files go through swebench's own loader (`load_swebench_dataset`, which calls
`datasets.load_dataset`); task repos through swebench's `load_task_repo`.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from swebench.cli._datasets import resolve_dataset
from swebench.task.checks import check_task_repo, errors
from swebench.task.repo import CONFIG_FILE, load_task_repo
# swebench.harness and swebench.image_builder pull in datasets and modal (over a second): imported where used

from harness.errors import UserError
from tasks.selection import TaskSelection, select_ids

HUB_ALIASES = {"verified": "SWE-bench/SWE-bench_Verified", "lite": "SWE-bench/SWE-bench_Lite",
               "full": "SWE-bench/SWE-bench", "multilingual": "SWE-bench/SWE-bench_Multilingual"}
NEEDED = ("instance_id", "repo", "base_commit", "problem_statement", "patch", "FAIL_TO_PASS", "PASS_TO_PASS")


class Selection(TaskSelection):
    dataset: str
    split: str = "test"
    namespace: str | None = "swebench"  # where prebuilt images come from


def is_task_repo(dataset: str) -> bool:
    return (Path(dataset) / CONFIG_FILE).is_file()


def load_instances(selection: Selection) -> list[dict]:
    if is_task_repo(selection.dataset):
        rows = _from_task_repo(Path(selection.dataset), selection)
    else:
        rows = _from_dataset(selection)
    rows = [complete_row(row, selection.namespace) for row in rows]
    return select(rows, selection)


def check_config(path: Path) -> None:
    """sweb.yaml: a mapping whose `datasets` (and `splits`, if given) are non-empty lists of names."""
    config_path = path / CONFIG_FILE
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"malformed {config_path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {config_path}: {exc}") from None
    if not isinstance(config, dict):
        raise UserError(f"malformed {config_path}: expected a mapping with `datasets:` and `splits:`, "
                        f"found {'an empty file' if config is None else type(config).__name__}")
    for key in ("datasets", "splits"):
        value = config.get(key, ["test"] if key == "splits" else None)
        if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
            raise UserError(f"malformed {config_path}: `{key}` must be a non-empty list of names, found {value!r}")


def _from_task_repo(path: Path, selection: Selection) -> list[dict]:
    check_config(path)
    try:
        problems = [p for p in errors(check_task_repo(path)) if "derived name" not in p.message]
        if problems:
            raise UserError(f"malformed task in {path}: {problems[0].where}: {problems[0].message}")
        rows = load_task_repo(path)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"malformed task repo {path}: {type(exc).__name__}: {detail}") from None
    if selection.task_ids:
        return rows
    return [row for row in rows if row.get("split", selection.split) == selection.split]


def _from_dataset(selection: Selection) -> list[dict]:
    name = HUB_ALIASES.get(selection.dataset.lower(), resolve_dataset(selection.dataset))
    local = name.endswith((".json", ".jsonl", ".parquet"))
    if local and not Path(name).is_file():
        raise UserError(f"dataset file {name} does not exist")
    if not local and looks_like_path(name):
        if Path(name).expanduser().is_dir():
            raise UserError(f"dataset folder {name} is not a swebench task repo: it has no {CONFIG_FILE}")
        if Path(name).expanduser().exists():
            raise UserError(f"dataset file {name} is not a .json, .jsonl or .parquet file")
        raise UserError(f"dataset path {name} does not exist (a task repo folder or a .json/.jsonl/.parquet file)")
    from swebench.harness.utils import load_swebench_dataset

    try:
        return [dict(row) for row in load_swebench_dataset(name, selection.split)]
    except (OSError, ValueError, ConnectionError) as exc:
        where = "read" if local else "load it from the hub (is the hub reachable? a local .jsonl works offline)"
        raise UserError(f"cannot {where}: {name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")


def looks_like_path(name: str) -> bool:
    """A local path, not a hub id (`owner/name`): it exists, is absolute or relative, or has more than one `/`."""
    return (Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
            or "\\" in name)


def complete_row(row: dict, namespace: str | None) -> dict:
    """What swebench 5.x needs that older rows lack, from swebench's own code: parser and image name."""
    missing = [key for key in NEEDED if key not in row]
    if missing:
        raise UserError(f"instance {row.get('instance_id', '?')} lacks {', '.join(missing)}")
    row = dict(row)
    row.setdefault("version", "")
    row.setdefault("eval_type", "pass_and_fail")
    if not row.get("log_parser"):
        from swebench.harness.log_parsers import python as python_parsers

        parser = python_parsers.MAP_REPO_TO_PARSER_PY.get(row["repo"])
        row["log_parser"] = parser.__name__ if parser else "parse_log_pytest"
    if not row.get("image"):
        from swebench.image_builder.image_spec import ImageSpec

        row["image"] = row.get("image_name") or row.get("docker_image") or ImageSpec(
            instance_id=row["instance_id"], dockerfile="-", namespace=namespace).name
    if not row.get("eval_script"):
        raise UserError(
            f"instance {row['instance_id']} has no eval_script: swebench 5.x no longer ships the per-repo "
            "specs that derived it, so use a 5.x dataset or task repo (`swebench dataset build`)")
    return row


def select(rows: list[dict], selection: Selection) -> list[dict]:
    by_id = {row["instance_id"]: row for row in rows}
    return [by_id[iid] for iid in select_ids(list(by_id), selection)]
