from django.urls import path

from webapp.runs import registry_views

app_name = "models"
urlpatterns = [
    path("", registry_views.model_list_page, name="list"),
    path("register/", registry_views.model_register_page, name="register"),
    path("checkpoints/<int:checkpoint_id>/delete/", registry_views.checkpoint_delete,
         name="checkpoint-delete"),
]
