"""What a stage reports back to the chain and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field


class StageFailed(RuntimeError):
    """A stage refused to go on; the message says why and what to do."""


@dataclass
class StageResult:
    stage: str
    ok: bool = True
    rows_in: int = 0
    rows_out: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Exact identifiers for the stages after this one (see chain.StageContext).
    handoff: dict[str, str] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)
