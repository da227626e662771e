from django.urls import path

from . import views

app_name = "reviewer"

urlpatterns = [
    path("exemplars/<int:exemplar_id>/image", views.exemplar_image, name="exemplar_image"),
    path("<slug:slug>/", views.review, name="queue"),
    path("<slug:slug>/grid/", views.grid, name="grid"),
    path("<slug:slug>/export/", views.export_page, name="export"),
    path("<slug:slug>/export/<int:export_id>/download", views.export_download, name="export_download"),
]
