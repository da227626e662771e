"""Cloud budgets: per project or per installation, per backend, per day or calendar month (UTC).

Before a paid call, ``check`` compares what the period has spent plus the call's estimate with every
budget that covers it. The spend is the recorded ``cost_usd`` of the backend's predictions and of
every paid call that left no prediction (``Spend`` rows, written by ``record_spend``: bake-offs,
candidate comparisons, calls billed although they failed), each added as it is recorded to its
day's ``SpendDay`` (``add_to_day``), so that a check sums at most 31 rows. A call that would cross a budget does
not happen: the item waits, queued with the reason, until the period ends (``OverBudget``), or the
project's local model answers instead, as the project chooses (``Project.over_budget``). After each
paid call, ``after_spend`` raises an alert the first time a period reaches 80% and 100%: a log
line, a ``budget.alert`` event (webhooks), and the banner on the project and backends pages
(``alerts``). Calls already in flight when a budget fills may overshoot it by their own cost.
``forecast`` says, before a bake-off, import or re-classification starts, after how many calls it
would cross a budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Avg, F, Q, Sum
from django.utils import timezone

from classify import events
from classify.models import Budget, Event, Prediction, Project, Spend, SpendDay

log = logging.getLogger(__name__)
LEVELS = (80, 100)
RECENT_CALLS = 50  # the estimate of a call is the average of the backend's last paid calls


class OverBudget(Exception):
    """The call would cross a budget: the item waits ``countdown`` seconds (until the period ends)."""

    def __init__(self, reason: str, countdown: float) -> None:
        super().__init__(reason)
        self.reason, self.countdown = reason, countdown


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    spent: Decimal
    start: datetime
    end: datetime

    @property
    def percent(self) -> float:
        return float(self.spent / self.budget.limit_usd * 100) if self.budget.limit_usd else 100.0

    @property
    def scope(self) -> str:
        return f"project {self.budget.project.slug}" if self.budget.project_id else "installation"

    def describe(self) -> str:
        every = {"day": "daily", "month": "monthly"}[self.budget.period]
        return f"the {self.scope}'s {every} budget of ${self.budget.limit_usd:.2f} for {self.budget.backend}"


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The UTC day or calendar month holding ``now``: [start, end)."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Budget.Period.DAY:
        return day, day + timedelta(days=1)
    start = day.replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def budgets_for(project: Project, backend: str):
    return Budget.objects.filter(Q(project=project) | Q(project__isnull=True), backend=backend).select_related("project")


def status_of(budget: Budget, now: datetime) -> BudgetStatus:
    start, end = period_bounds(budget.period, now)
    days = SpendDay.objects.filter(backend=budget.backend, day__gte=start.date(), day__lt=end.date())
    if budget.project_id:
        days = days.filter(project_id=budget.project_id)
    return BudgetStatus(budget, days.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0), start, end)


def add_to_day(*, project_id: int, backend: str, cost_usd: Decimal | float, at: datetime) -> None:
    """Add a paid call's cost to its project's, backend's and UTC day's ``SpendDay`` (what the
    budgets read). Call it in the transaction that records the call."""
    cost_usd = Decimal(str(cost_usd))
    if cost_usd <= 0:
        return
    key = {"project_id": project_id, "backend": backend, "day": at.astimezone(UTC).date()}
    if SpendDay.objects.filter(**key).update(cost_usd=F("cost_usd") + cost_usd):
        return
    try:
        with transaction.atomic():
            SpendDay.objects.create(**key, cost_usd=cost_usd)
    except IntegrityError:  # another worker created the day's row first
        SpendDay.objects.filter(**key).update(cost_usd=F("cost_usd") + cost_usd)


def record_spend(*, project: Project, backend: str, cost_usd: float | Decimal, kind: str) -> None:
    """Count a paid call that leaves no prediction (``Spend.Kind``) against the budgets, and
    raise their alerts. A call that cost nothing is not recorded."""
    if _store_spend(project, backend, cost_usd, kind):
        after_spend(project, backend)


def _store_spend(project: Project, backend: str, cost_usd: float | Decimal, kind: str) -> Decimal:
    cost = round(Decimal(str(cost_usd)), 6)
    if cost > 0:
        with transaction.atomic():
            spend = Spend.objects.create(project=project, backend=backend, cost_usd=cost, kind=kind)
            add_to_day(project_id=project.pk, backend=backend, cost_usd=cost, at=spend.created_at)
    return max(cost, Decimal(0))


MICRODOLLAR = Decimal("0.000001")  # costs are kept to six places: so are the amounts events carry


class Allowance:
    """The budgets of one long run of paid calls (a bake-off over up to 100,000 images).

    ``blocked`` is ``check`` for the next call, but the period's spend is summed only once every
    ``reread`` calls, and the run's own calls (``charge``) are added to it in between: summing it
    before every call would cost more with each call the period has seen. Spending by others
    between two reads is seen at the next read; like calls in flight, it may overshoot a budget by
    that much. Alerts are raised as soon as the run's own calls reach a level."""

    def __init__(self, project: Project, backend, *, kind: str, reread: int = 50) -> None:
        self.project, self.backend, self.kind, self.reread = project, backend, kind, reread
        self.calls, self.extra, self.estimate, self.statuses = 0, Decimal(0), Decimal(0), []

    def blocked(self) -> BudgetStatus | None:
        if self.calls % self.reread == 0:
            now = timezone.now()
            self.statuses = [status_of(budget, now) for budget in budgets_for(self.project, self.backend.name)]
            self.extra, self.estimate = Decimal(0), estimate_call(self.project, self.backend)
        self.calls += 1
        for current in self.statuses:
            spent = current.spent + self.extra
            if spent + self.estimate > current.budget.limit_usd or spent >= current.budget.limit_usd:
                return current
        return None

    def charge(self, cost_usd: float | Decimal) -> None:
        cost = _store_spend(self.project, self.backend.name, cost_usd, self.kind)
        levels = [self._level(current, self.extra) for current in self.statuses]
        self.extra += cost
        if any(self._level(current, self.extra) > level for current, level in zip(self.statuses, levels, strict=True)):
            after_spend(self.project, self.backend.name)

    @staticmethod
    def _level(current: BudgetStatus, extra: Decimal) -> int:
        limit = current.budget.limit_usd
        percent = (current.spent + extra) / limit * 100 if limit else 100
        return max((level for level in LEVELS if percent >= level), default=0)


def forecast(project: Project, backend: str, *, per_call: Decimal, calls: int | None = None,
             waits: bool = False) -> str:
    """Before work that makes ``calls`` paid calls of ``per_call`` each (None: an unknown number,
    as an S3 import's): which budget it would cross and after how many calls, or that the budgets
    allow it. Empty when no budget covers the backend. What happens to the rest follows the
    project's choice (``Project.over_budget``), unless ``waits`` (a bake-off always waits)."""
    now, sentences = timezone.now(), []
    fallback = not waits and project.over_budget == Project.OverBudget.LOCAL
    rest = "the rest go to the local model until" if fallback else "the rest wait until"
    for budget in budgets_for(project, backend):
        current = status_of(budget, now)
        left = max(Decimal(0), budget.limit_usd - current.spent)
        fits = int(left // per_call) if per_call else None
        if fits is None or (calls is not None and fits >= calls):
            sentences.append(f"{current.describe()} allows it (${left:.2f} left)")
        else:
            sentences.append(f"{current.describe()} has ${left:.2f} left, about {fits:,} call(s): "
                             f"{rest} {current.end:%Y-%m-%d %H:%M} UTC")
    return ("; ".join(sentences) + ".") if sentences else ""


def estimate_call(project: Project, backend) -> Decimal:
    """What one call will likely cost: the backend's price per call when it has one, else the
    average of its recent paid calls in the project (Bedrock bills by token)."""
    price = getattr(backend, "price", None)
    if price is None:
        price = getattr(backend, "price_per_call", None)
    if price:
        return Decimal(str(price))
    recent = Prediction.objects.filter(item__project=project, backend=backend.name, cost_usd__gt=0).order_by(
        "-created_at")[:RECENT_CALLS]
    average = Prediction.objects.filter(pk__in=recent.values("pk")).aggregate(avg=Avg("cost_usd"))["avg"]
    return Decimal(average or 0)


def check(project: Project, backend) -> BudgetStatus | None:
    """The first budget the next call would cross, or None when the call may go ahead."""
    now = timezone.now()
    estimate = estimate_call(project, backend)
    for budget in budgets_for(project, backend.name):
        current = status_of(budget, now)
        if current.spent + estimate > budget.limit_usd or current.spent >= budget.limit_usd:
            return current
    return None


def waiting_reason(blocked: BudgetStatus) -> str:
    return f"Waiting: {blocked.describe()} is used up; resumes {blocked.end:%Y-%m-%d %H:%M} UTC."


def wait_for(blocked: BudgetStatus) -> OverBudget:
    countdown = max(1.0, (blocked.end - timezone.now()).total_seconds() + 1)
    return OverBudget(waiting_reason(blocked), countdown)


def after_spend(project: Project, backend: str) -> list[BudgetStatus]:
    """Alert once per period and level (80%, 100%) for each budget the spend just reached."""
    now, raised = timezone.now(), []
    for budget in budgets_for(project, backend):
        current = status_of(budget, now)
        key = current.start.date().isoformat()
        level = max((level for level in LEVELS if current.percent >= level), default=0)
        if level and budget.alerted.get(key, 0) < level:
            alerted = {key: level}  # older periods are forgotten
            if not Budget.objects.filter(pk=budget.pk, alerted=budget.alerted).update(alerted=alerted):
                continue  # another worker raised it
            log.warning("budget alert: %s reached %d%% of %s", project.slug, level, current.describe())
            events.record_event(project_id=project.pk, type=Event.Type.BUDGET_ALERT, data={"budget": {
                "scope": "project" if budget.project_id else "installation", "project": project.slug,
                "backend": budget.backend, "period": budget.period, "period_start": current.start.isoformat(),
                "limit_usd": str(budget.limit_usd), "spent_usd": str(current.spent.quantize(MICRODOLLAR)),
                "level": level}})
            raised.append(current)
    return raised


def alerts(project: Project) -> list[BudgetStatus]:
    """The project's budgets (and the installation's) at 80% or more this period: the banner."""
    now = timezone.now()
    return [current for budget in covering(project) if (current := status_of(budget, now)).percent >= LEVELS[0]]


def set_budget(*, project: Project | None, backend: str, period: str, limit_usd: Decimal) -> Budget:
    """Create or change the budget of that scope, backend and period."""
    budget, _ = Budget.objects.update_or_create(project=project, backend=backend, period=period,
                                                defaults={"limit_usd": limit_usd})
    return budget


def delete_budget(*, project: Project, budget_id: int) -> bool:
    """Remove one of the project's own budgets (installation budgets are for the Django admin)."""
    return Budget.objects.filter(project=project, pk=budget_id).delete()[0] > 0


def set_cost_options(*, project: Project, over_budget: str, cascade: bool) -> None:
    """What waits when a budget is used up, and whether the cascade goes first."""
    Project.objects.filter(pk=project.pk).update(over_budget=over_budget, cascade=cascade)
    project.over_budget, project.cascade = over_budget, cascade



def covering(project: Project):
    """The project's own budgets and the installation's, which cover it too."""
    return Budget.objects.filter(Q(project=project) | Q(project__isnull=True)).select_related("project")
