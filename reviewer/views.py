"""The review list: items that need a person, with one button per class."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from classify import selectors
from classify.models import Item

from .services import DecisionRefused, record_decision

PAGE_SIZE = 24


def queue(request: HttpRequest, slug: str) -> HttpResponse:
    project = selectors.project_for(request.user, slug)
    pending = selectors.items_for(request.user).filter(project=project, status=Item.Status.NEEDS_REVIEW)
    context = {
        "project": project,
        "items": pending.order_by("created_at", "id")[:PAGE_SIZE],
        "remaining": pending.count(),
        "labels": list(project.labels.all()),
    }
    return render(request, "reviewer/queue.html", context)


@require_POST
def decide(request: HttpRequest, slug: str, item_id: int) -> HttpResponse:
    item = selectors.item_for(request.user, item_id)
    if item.project.slug != slug:
        raise Http404("No such item.")
    label = item.project.labels.filter(pk=request.POST.get("label")).first()
    if label is None:
        messages.error(request, "Pick one of the project's classes.")
    else:
        try:
            record_decision(item=item, label=label, reviewer=request.user)
            messages.success(request, f"Item #{item.pk} labelled {label.name}.")
        except DecisionRefused as exc:
            messages.error(request, str(exc))
    return redirect("reviewer:queue", slug=slug)
