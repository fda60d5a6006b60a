"""Sampling parameters of model requests: kept apart from harness/model.py so that a run's configuration (and the
CLI that builds it) does not import the openai SDK."""

from __future__ import annotations

from pydantic import BaseModel


class Sampling(BaseModel):
    temperature: float = 1.0
    top_p: float = 0.95
    seed: int | None = None
    stop: list[str] | None = None
