from django.urls import path

from . import api

app_name = "api"

urlpatterns = [
    path("projects/<slug:slug>/items/", api.project_items, name="project_items"),
    path("items/<int:item_id>/", api.item_detail, name="item_detail"),
]
