"""`cwm-eval` starts fast: heavy libraries are imported where they are used, not by the CLI's import, its help,
or the way of `cwm-eval run` to its first container (issue 14: the first container within 2 s; bench/startup.py).

Each check runs a fresh interpreter and reads back its `sys.modules`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

HEAVY = ("torch", "transformers", "datasets", "pandas", "matplotlib", "ray", "swebench", "trl", "peft")
# on the way to a demo run's first container: swebench's task-repo reader (swebench.task) is used, its harness and
# image builder (datasets, modal) are not; the oracle needs no model client
RUN_HEAVY = tuple(name for name in HEAVY if name != "swebench") + (
    "swebench.harness", "swebench.image_builder", "modal", "openai")


def python(script: str) -> str:
    """The stdout of a fresh interpreter running `script`."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def modules_after(script: str) -> set[str]:
    """The modules held after `script`, which prints them as JSON on its last line."""
    return set(json.loads(python(script).strip().splitlines()[-1]))


def imported(modules: set[str], heavy: tuple[str, ...]) -> list[str]:
    return sorted(name for name in heavy if any(m == name or m.startswith(name + ".") for m in modules))


def test_importing_the_cli_imports_no_heavy_library():
    modules = modules_after("""
        import json, sys
        import harness.cli
        print(json.dumps(sorted(sys.modules)))
    """)
    assert "harness.cli_grade" in modules  # the commands registered themselves
    assert imported(modules, HEAVY) == []


def test_run_help_imports_no_heavy_library():
    modules = modules_after("""
        import json, sys
        from harness.cli import main
        sys.argv = ["cwm-eval", "run", "--help"]
        try:
            main()
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print(json.dumps(sorted(sys.modules)))
    """)
    assert imported(modules, HEAVY) == []


def test_run_reaches_its_first_container_without_heavy_libraries(tmp_path):
    """A real `cwm-eval run demo --agent oracle` (suite, image check, run folder) up to the container's creation,
    where the process exits instead of creating it."""
    found = tmp_path / "modules.json"
    python(f"""
        import json, os, sys
        from harness import sandbox
        from harness.cli import main

        def first_container(*args, **kwargs):
            with open({str(found)!r}, "w") as out:
                json.dump(sorted(sys.modules), out)
            os._exit(0)

        sandbox.Sandbox.start = staticmethod(first_container)
        sys.argv = ["cwm-eval", "run", "demo", "--agent", "oracle", "--task", "demo__calc-1",
                    "--output", {str(tmp_path / "results")!r}]
        main()
    """)
    assert found.exists(), "the run ended without starting a container"
    modules = set(json.loads(found.read_text()))
    assert "tasks.swebench.suite" in modules and "harness.runner" in modules
    assert imported(modules, RUN_HEAVY) == []
