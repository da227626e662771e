from django.urls import path

from . import views

app_name = "classify"

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/new/", views.project_create, name="project_create"),
    path("projects/new/suggestions/", views.project_suggestions, name="project_suggestions"),
    path("projects/<slug:slug>/", views.project_detail, name="project"),
    path("projects/<slug:slug>/items/<int:item_id>/", views.item_detail, name="item_detail"),
    path("projects/<slug:slug>/backends/", views.backends_page, name="backends"),
    path("projects/<slug:slug>/reclassify/", views.reclassify_page, name="reclassify"),
    path("projects/<slug:slug>/models/", views.models_page, name="models"),
    path("projects/<slug:slug>/models/runs/<int:run_id>/decide/", views.decide_run, name="decide_run"),
    path("items/<int:item_id>/image", views.item_image, name="item_image"),
    path("account/", views.account, name="account"),
    path("healthz", views.healthz, name="healthz"),
    path("livez", views.livez, name="livez"),
]
