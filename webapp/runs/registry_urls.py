from django.urls import path

from webapp.runs import registry_views

app_name = "models"
urlpatterns = [
    path("", registry_views.model_list_page, name="list"),
    path("register/", registry_views.model_register_page, name="register"),
    path("download/", registry_views.model_download_page, name="download"),
    path("downloads/", registry_views.downloads_fragment, name="downloads"),
    path("downloads/<int:download_id>/cancel/", registry_views.download_cancel_page,
         name="download-cancel"),
    path("checkpoints/<int:checkpoint_id>/delete/", registry_views.checkpoint_delete,
         name="checkpoint-delete"),
]
