from django.urls import path

from webapp.datasets import views

app_name = "datasets"
urlpatterns = [
    path("", views.dataset_list_page, name="list"),
    path("upload/", views.dataset_upload, name="upload"),
    path("from-hub/", views.dataset_from_hub_page, name="from-hub"),
    path("<int:dataset_id>/", views.dataset_detail_page, name="detail"),
    path("<int:dataset_id>/delete/", views.dataset_delete, name="delete"),
]
