"""Agents without a model: `oracle` applies the task's reference solution, `nop` does nothing.

They validate tasks and the harness: the oracle must resolve every task, nop (nearly) none.
"""

from __future__ import annotations

import asyncio

from agents.base import AgentResult, TrialEnv
from harness.records import ExitStatus, event

REFERENCE_PATH = "/tmp/cwm-eval-reference"


class OracleAgent:
    name = "oracle"
    model = None
    grades_worktree = True  # it applies the reference in the work tree

    async def solve(self, env: TrialEnv) -> AgentResult:
        reference = env.suite.reference_solution(env.task)
        await asyncio.to_thread(env.sandbox.write_file, REFERENCE_PATH, reference.content, 0o755)
        if reference.kind == "patch":
            command = f"git apply --verbose {REFERENCE_PATH} || patch --batch --forward -p1 -i {REFERENCE_PATH}"
        else:
            command = f"bash {REFERENCE_PATH}"
        result = await asyncio.to_thread(env.session.run, command, reference.timeout)
        env.trajectory.write(event("message", role="tool: bash", command=command, content=result.output,
                                   exit_code=result.exit_code))
        return AgentResult(exit_status=ExitStatus.ORACLE, turns=1, graded=True)


class NopAgent:
    name = "nop"
    model = None
    grades_worktree = True

    async def solve(self, env: TrialEnv) -> AgentResult:
        env.trajectory.write(event("end", exit_status=ExitStatus.NO_ACTION.value))
        return AgentResult(exit_status=ExitStatus.NO_ACTION, graded=True)
