from django.urls import path

from . import views

app_name = "integrations"

urlpatterns = [
    path("projects/<slug:slug>/integrations/", views.integrations_page, name="page"),
    path("projects/<slug:slug>/integrations/endpoints/<int:endpoint_id>/", views.endpoint_action, name="endpoint"),
    path("projects/<slug:slug>/integrations/deliveries/<int:delivery_id>/retry", views.retry_delivery, name="retry"),
    path("projects/<slug:slug>/integrations/imports/<int:import_id>/status", views.import_status, name="import_status"),
    path("api/docs/", views.api_docs, name="api_docs"),
]
