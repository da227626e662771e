from django.urls import path

from . import views

app_name = "integrations_api"

urlpatterns = [
    path("schema/", views.api_schema, name="schema"),
]
