from django.urls import path

from . import api

app_name = "review_api"

urlpatterns = [
    path("projects/<slug:slug>/review/claim/", api.claim, name="claim"),
    path("projects/<slug:slug>/review/grid/claim/", api.grid_claim, name="grid_claim"),
    path("projects/<slug:slug>/review/undo/", api.undo, name="undo"),
    path("projects/<slug:slug>/review/stats/", api.stats, name="stats"),
    path("reviews/renew/", api.renew, name="renew"),
    path("reviews/<str:token>/decision/", api.decision, name="decision"),
    path("reviews/<str:token>/skip/", api.skip, name="skip"),
    path("reviews/<str:token>/release/", api.release, name="release"),
]
