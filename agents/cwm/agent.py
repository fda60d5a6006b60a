"""The CWM bash agent, stepping exactly as CWM's SWE environment steps (swerl_tool.py `step`, eval mode).

Each reply: count the turn, fail at the context or turn limit, parse (one `</think>`, one tool call), run the tool,
answer with the output wrapper and the budget. A malformed reply after a submission ends the episode and its
submission is graded; before one, the error goes back to the model as a user message. In the test-generation
scenario (agents/cwm/testgen.py) any malformed reply ends it: graded after a submission, failed before one.
"""

from __future__ import annotations

import asyncio
import time

from agents.base import AgentResult, TrialEnv
from agents.cwm.config import CwmConfig
from agents.cwm.guided import structured_outputs, turn_pattern
from agents.cwm.testgen import scenario_texts
from agents.cwm.texts import FormatError, NoSuchToolError, ProjectTexts, Texts, terminal_prompt
from agents.cwm.tools import install_plugins, run_tool
from harness.conversation import ChatConversation, ChatRenderer, CharEstimate, Conversation, RendererTokens, \
    TokenConversation, TokenCounter
from harness.model import ContextLimitExceeded, ModelClient
from harness.records import ExitStatus, Usage, event
from tasks.base import Suite, Task

THINK_END = "</think>"


def task_prompt(task: Task, suite: Suite | None, texts: Texts) -> str:
    if getattr(suite, "agent_prompt", "issue") == "task":
        return terminal_prompt(task.instruction, task.workdir)
    return texts.issue_prompt(task.instruction, task.workdir)


def initial_messages(task: Task, suite: Suite | None, texts: Texts, config: CwmConfig,
                     counter: TokenCounter) -> list[dict]:
    """The system prompt and the task prompt, the latter cut from the left to `max_prompt_len` as CWM does."""
    system = texts.system_prompt(config.tools, session_timeout=config.command_timeout,
                                 context_size=config.context_size, max_turns=config.max_turns)
    user = counter.truncate_message("user", task_prompt(task, suite, texts), config.max_prompt_len, "left")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class Episode:
    """What CWM's SWERLState tracks: the step count, the last successful submission."""

    def __init__(self):
        self.turns = 0
        self.format_errors = 0
        self.patch: str | None = None
        self.usage = Usage()


class CwmAgent:
    name = "cwm"

    def __init__(self, client: ModelClient, config: CwmConfig | None = None, renderer: ChatRenderer | None = None,
                 texts: Texts | None = None):
        self.client = client
        self.config = config or CwmConfig()
        self.renderer = renderer  # token-exact mode
        self.texts = texts or ProjectTexts()

    @property
    def model(self) -> str | None:
        return self.client.model

    def counter(self) -> TokenCounter:
        return RendererTokens(self.renderer) if self.renderer else CharEstimate(self.config.chars_per_token)

    def conversation(self, messages: list[dict]) -> Conversation:
        if self.renderer is not None:
            return TokenConversation(self.client, self.renderer, messages, logprobs=self.config.logprobs)
        return ChatConversation(self.client, messages, self.config.chars_per_token)

    async def solve(self, env: TrialEnv) -> AgentResult:
        # the context budget is CWM's, or the server's context length when that is smaller
        cfg = self.config.model_copy(update={"context_size": min(
            self.config.context_size, self.client.max_model_len or self.config.context_size)})
        episode = Episode()
        texts = scenario_texts(self.texts, env.suite)  # the suite's scenario: fix the issue, or write a test
        if {"edit", "create"} & set(cfg.tools):
            started = time.monotonic()
            await asyncio.to_thread(install_plugins, env.sandbox, texts)
            episode.usage.setup_seconds = time.monotonic() - started
        counter = self.counter()
        messages = initial_messages(env.task, env.suite, texts, cfg, counter)
        for message in messages:
            env.trajectory.write(event("message", **message))
        conversation = self.conversation(messages)
        submit_note = getattr(env.suite, "agent_prompt", "issue") == "task"

        def record_tokens() -> None:
            tokens = conversation.token_record()
            if tokens is not None:
                env.trajectory.write(event("tokens", **tokens))

        def finish(status: ExitStatus) -> AgentResult:
            record_tokens()
            env.trajectory.write(event("end", exit_status=status.value, turns=episode.turns,
                                       graded=status is ExitStatus.SUBMITTED))
            return AgentResult(exit_status=status, submitted_patch=episode.patch, turns=episode.turns,
                               format_errors=episode.format_errors, usage=episode.usage,
                               graded=status is ExitStatus.SUBMITTED)

        try:
            return await self._loop(env, cfg, episode, counter, conversation, finish, submit_note, texts)
        except asyncio.CancelledError:  # the trial's time ran out: what was sampled so far is still the episode's
            record_tokens()
            raise

    async def _loop(self, env: TrialEnv, cfg: CwmConfig, episode: Episode, counter: TokenCounter,
                    conversation: Conversation, finish, submit_note: bool, texts: Texts) -> AgentResult:
        ends_on_any_error = getattr(texts, "any_format_error_ends", False)
        while True:
            room = cfg.context_size - conversation.tokens_used
            if room <= 0:  # CWM's harness stops once the observations fill the context
                return finish(ExitStatus.CONTEXT_LIMIT)
            max_tokens = min(cfg.max_action_len, room)
            try:
                reply = await conversation.sample(max_tokens, self.guide(cfg, max_tokens, episode))
            except ContextLimitExceeded:
                return finish(ExitStatus.CONTEXT_LIMIT)
            episode.turns += 1
            self._record_reply(env, episode, reply)
            if conversation.tokens_used > cfg.context_size:
                return finish(ExitStatus.CONTEXT_LIMIT)
            if episode.turns >= cfg.max_turns:  # before parsing: the reply is never run
                return finish(ExitStatus.TURN_LIMIT)
            text = reply.text
            ends = text.count(THINK_END)
            answer = text.split(THINK_END, 1)[-1]
            try:
                if ends != 1:
                    raise FormatError(texts.think_end_error(ends))
                name, body = texts.parse_tool_calls(answer)
                if name not in cfg.tools:
                    raise NoSuchToolError(texts.no_such_tool(name))
            except (FormatError, NoSuchToolError) as exc:
                if episode.patch is not None and (ends_on_any_error or ends == 1 and (not cfg.strict_format
                                                                                      or "##" in answer)):
                    return finish(ExitStatus.SUBMITTED)  # the final response: grade the submission
                episode.format_errors += 1
                env.trajectory.write(event("format_error", turn=episode.turns, error=f"{type(exc).__name__}: {exc}"))
                if cfg.strict_format or ends_on_any_error:
                    return finish(ExitStatus.FORMAT_ERROR)
                feedback = counter.truncate_message("user", f"{type(exc).__name__}: {exc}", cfg.max_user_turn_len,
                                                    "right")
                conversation.add("user", feedback)
                env.trajectory.write(event("message", role="user", content=feedback, turn=episode.turns))
                continue
            outcome = await asyncio.to_thread(run_tool, name, body, env.session, texts, submit_note)
            episode.usage.command_seconds += outcome.seconds
            feedback = outcome.feedback
            if name == "submit" and outcome.success:
                episode.patch = outcome.patch
                if not submit_note:
                    feedback = texts.submission_feedback(outcome.patch)
            content = self.observation(counter, cfg, conversation.tokens_used, episode.turns, name, feedback, texts)
            conversation.add(f"tool: {name}", content)
            env.trajectory.write(event("message", role=f"tool: {name}", content=content, turn=episode.turns,
                                       tool=name, command=body, success=outcome.success,
                                       seconds=round(outcome.seconds, 6)))

    @staticmethod
    def guide(cfg: CwmConfig, max_tokens: int, episode: Episode) -> dict | None:
        """--guided-format: the turn format as vLLM's structured-output constraint; a final answer (no tool call)
        is allowed only once a submission succeeded, as the rules say."""
        if not cfg.guided_format:
            return None
        return structured_outputs(turn_pattern(cfg.tools, max_tokens, final_answer=episode.patch is not None))

    def observation(self, counter: TokenCounter, cfg: CwmConfig, used: int, turns: int, tool: str,
                    feedback: str, texts: Texts | None = None) -> str:
        """Output wrapper, blank line, budget; the budget's token figure is CWM's estimate (unfilled template)."""
        texts = texts or self.texts
        role = f"tool: {tool}"
        wrapped = texts.output(feedback)
        estimate = min(cfg.max_user_turn_len, counter.message_count(role, f"{wrapped}\n\n{texts.budget_template}"))
        budget = texts.budget(cfg.max_turns - turns, cfg.context_size - used - estimate)
        return counter.truncate_message(role, f"{wrapped}\n\n{budget}", cfg.max_user_turn_len, "right")

    def _record_reply(self, env: TrialEnv, episode: Episode, reply) -> None:
        usage = episode.usage
        usage.model_calls += 1
        usage.prompt_tokens += reply.prompt_tokens
        usage.completion_tokens += reply.completion_tokens
        usage.model_seconds += reply.latency
        # token-exact mode keeps the whole sequence once, in the closing `tokens` record; chat mode with vLLM has the
        # whole prompt on the first call and a delta on each later one (see ModelReply)
        skip = {"text", "prompt_token_ids"} if self.renderer else {"text"}
        skip |= {name for name in ("prompt_token_ids_offset", "prompt_token_ids_delta")
                 if getattr(reply, name) is None}
        env.trajectory.write(event("message", role="assistant", content=reply.text, turn=episode.turns,
                                   **reply.model_dump(exclude=skip), tokens_per_second=round(reply.tokens_per_second, 2)))
