"""The local head's gate and its automatic promotion.

The gate asks one question: does the candidate auto-accept more of the project's human labels at
the target precision (its calibration's coverage, out of fold) than the active model does on the
same labels? A tie in coverage goes to accuracy on the same labels, so a first head for classes
the zero-shot mapping cannot name is promoted before it auto-accepts anything (it then ranks the
candidates people see in review). A full tie (the same coverage above 0 and the same accuracy)
goes to the candidate, which learnt from the labels since: coverage moves in steps (the sizes
the calibration tests grow by 15%), so coverage ties are common (8 of 10 refits kept out in two
MNIST loop runs).
No absolute F1 bar.

In automatic mode the ``promote`` step activates the candidate and applies its thresholds, and
says so in the run's log, on the model version and, through it, on every prediction it makes. In
approval mode it leaves the run waiting for a project admin. A candidate that is not promoted
leaves the active model as it is, except a zero-shot mapping, whose thresholds are recalibrated
on the labels that came in since (automatic mode).
"""

from __future__ import annotations

from django.db import transaction

from classify.models import Project, TrainingRun
from classify.services import learning
from classify.services.scoring import build_backend

from .outcomes import Done, NotPromoted

Mode = Project.LearningMode


def coverage_gate(run: TrainingRun) -> Done:
    candidate, project = run.candidate, run.project
    active = run.metrics.get("active") or {"model": "no model", "coverage": 0.0}
    before, after = active.get("coverage") or 0.0, candidate.coverage or 0.0
    target, n = f"{project.target_precision:.0%}", (run.metrics.get("calibration") or {}).get("n", 0)
    versus = f"{active['model']} {before:.0%} → {candidate.version} {after:.0%} at {target} precision"
    if after > before:
        return Done(f"Coverage on the same {n} labels: {versus}.")
    accuracy, active_accuracy = run.metrics.get("accuracy") or 0.0, active.get("accuracy") or 0.0
    if after == before and accuracy > active_accuracy:
        return Done(f"Coverage on the same {n} labels: {versus}; more accurate ({active_accuracy:.0%} → {accuracy:.0%}).")
    if after == before > 0.0 and accuracy == active_accuracy:
        return Done(f"Coverage on the same {n} labels: {versus}; as accurate ({accuracy:.0%}), and it learnt from the "
                    f"labels since.")
    _recalibrate_active(run, active)
    if after == before == 0.0:
        raise NotPromoted(f"Neither {active['model']} nor {candidate.version} can auto-accept anything yet at {target} "
                          f"precision on the same {n} labels, and it is no more accurate: nothing to gain.")
    raise NotPromoted(f"{candidate.version} auto-accepts {after:.0%} of the same {n} labels at {target} precision, "
                      f"not more than the active {active['model']} ({before:.0%}).")


def _recalibrate_active(run: TrainingRun, active: dict) -> None:
    """Automatic mode: the labels gathered since refine the thresholds of an active zero-shot
    mapping, which was measured by its own scores.

    Never those of an active head: it was measured by fold heads refitted on its labels, whose
    scores run lower than its own (they learnt from fewer labels, in the basis of today's
    pictures). Thresholds set on them let the head itself accept more than was certified:
    measured on the MNIST loop, 76% -> 96% accepted at 94.8%, and in another order 99% at 87.9%,
    below the 93% floor. An active head keeps the thresholds certified when it was promoted.
    """
    project = run.project
    if project.learning_mode != Mode.AUTOMATIC or not active.get("calibration") or not active.get("own_scores"):
        return
    version = active_model_version(project)
    learning.apply_calibration(project=project, calibration=active["calibration"], backend="local",
                               model_version=version,
                               summary=f"Thresholds of {active['model']} recalibrated on {active['calibration']['n']} "
                                       f"labels after run #{run.pk} (automatically).")


def active_model_version(project: Project) -> str:
    return build_backend(project, list(project.labels.all()), name="local").model_version


def promote(run: TrainingRun) -> Done:
    """Automatic mode: activate the candidate, apply its thresholds, and end the run approved.
    Approval mode: nothing here; the run waits for a project admin."""
    project = run.project
    if project.learning_mode != Mode.AUTOMATIC:
        return Done("Waiting for a project admin (approval mode).")
    candidate = run.candidate
    before = (run.metrics.get("active") or {}).get("coverage") or 0.0
    provenance = learning.provenance_text(candidate, before=before, target=project.target_precision, automatic=True)
    with transaction.atomic():
        # FOR NO KEY UPDATE: promotions of a project still queue behind each other, but a decision
        # committing its rows (their foreign keys take FOR KEY SHARE on the project) does not wait
        # for this one, which waits for the decision's rows: measured, a deadlock and a 500.
        Project.objects.select_for_update(no_key=True).get(pk=project.pk)
        learning.activate_local(project=project, candidate=candidate, provenance=provenance,
                                note=f"Promoted automatically by training run #{run.pk}.")
        change = learning.apply_calibration(project=project, calibration=run.metrics["calibration"], backend="local",
                                            model_version=active_model_version(project))
        run.state = TrainingRun.State.APPROVED
    learning.refresh_learning_order(project)
    return Done(f"{provenance}. {change.summary}", finished=True)


def approve(run: TrainingRun, *, user, apply_thresholds: bool) -> str:
    """Approval mode, a project admin approved: the same provenance, thresholds if asked."""
    candidate, project = run.candidate, run.project
    before = (run.metrics.get("active") or {}).get("coverage") or 0.0
    provenance = learning.provenance_text(candidate, before=before, target=project.target_precision, automatic=False)
    learning.activate_local(project=project, candidate=candidate, provenance=f"{provenance} by {user}",
                            note=f"Approved in training run #{run.pk}.")
    if apply_thresholds and run.metrics.get("calibration"):
        learning.apply_calibration(project=project, calibration=run.metrics["calibration"], backend="local",
                                   model_version=active_model_version(project), user=user)
    return provenance
