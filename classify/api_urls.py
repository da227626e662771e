from django.urls import path

from . import api

app_name = "api"

urlpatterns = [
    path("projects/<slug:slug>/items/", api.project_items, name="project_items"),
    path("items/<int:item_id>/", api.item_detail, name="item_detail"),
    path("projects/<slug:slug>/classes/<int:label_id>/exemplars/", api.class_exemplars, name="class_exemplars"),
    path("exemplars/<int:exemplar_id>/", api.exemplar_detail, name="exemplar_detail"),
    path("projects/<slug:slug>/learning/", api.learning_state, name="learning"),
]
