from django.urls import path

from . import views

app_name = "reviewer"

urlpatterns = [
    path("<slug:slug>/", views.queue, name="queue"),
    path("<slug:slug>/items/<int:item_id>/decide", views.decide, name="decide"),
]
