"""Training budgets of the networks: stop at an epoch boundary when the epochs or the wall-clock budget run out.

A CPU-only run cannot afford a GPU's epochs; a time budget lets a study say "train for at most N minutes" and report
honestly what that bought (epochs run, device, time, and the validation quality the caller records). The budget is
checked at epoch ends only, so every epoch that ran is complete and the checkpoint choice stays validation-based.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

__all__ = ["TrainingBudget", "BudgetClock"]


@dataclass(frozen=True)
class TrainingBudget:
    """What a training run was allowed and what it used.

    Attributes
    ----------
    epochs_planned : the configured epochs.
    epochs_run : epochs completed.
    stopped_by : ``"epochs"`` (all planned epochs ran) or ``"time budget"``.
    budget_minutes : the configured wall-clock budget (None: none).
    device : the torch device trained on (``cpu``, ``cuda``, ...).
    seconds : wall time of the training loop (validation included).
    epoch_ends : wall time at the end of each epoch (validation included), for quality-per-minute curves.
    """

    epochs_planned: int
    epochs_run: int
    stopped_by: str
    budget_minutes: float | None
    device: str
    seconds: float
    epoch_ends: tuple[float, ...] = ()

    def as_dict(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 1), "epoch_ends": [round(t, 1) for t in self.epoch_ends]}


class BudgetClock:
    """Decides at each epoch end whether it is the last one; call :meth:`last_epoch` then :meth:`epoch_done`.

    With a budget, epoch ``k`` is the last when the elapsed time plus the mean epoch time so far (the elapsed time
    over ``k``) would exceed it: the next epoch would likely overrun, and the one just trained still gets validated.
    """

    def __init__(self, epochs: int, budget_minutes: float | None, device: str):
        self.epochs, self.budget_minutes, self.device = int(epochs), budget_minutes, device
        self._start = time.perf_counter()
        self._ends: list[float] = []
        self._stopped_by = "epochs"

    def elapsed(self) -> float:
        return time.perf_counter() - self._start

    def last_epoch(self, epoch: int) -> bool:
        if epoch >= self.epochs:
            return True
        if self.budget_minutes is None:
            return False
        elapsed = self.elapsed()
        if elapsed + elapsed / epoch > 60.0 * self.budget_minutes:
            self._stopped_by = "time budget"
            return True
        return False

    def epoch_done(self) -> None:
        self._ends.append(self.elapsed())

    def summary(self) -> TrainingBudget:
        return TrainingBudget(self.epochs, len(self._ends), self._stopped_by, self.budget_minutes, self.device, self.elapsed(),
                              tuple(self._ends))
