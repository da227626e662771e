from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("projects/<slug:slug>/dashboard/", views.dashboard, name="dashboard"),
    path("projects/<slug:slug>/dashboard/plots/<slug:name>/", views.plot, name="plot"),
]
