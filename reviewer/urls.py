from django.urls import path

from . import views

app_name = "reviewer"

urlpatterns = [
    path("exemplars/<int:exemplar_id>/image", views.exemplar_image, name="exemplar_image"),
    path("<slug:slug>/", views.review, name="queue"),
    path("<slug:slug>/grid/", views.grid, name="grid"),
]
