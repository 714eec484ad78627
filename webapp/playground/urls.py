from django.urls import path

from webapp.playground import views

app_name = "playground"
urlpatterns = [
    path("", views.playground_page, name="page"),
    path("generate/", views.playground_generate, name="generate"),
    path("<int:session_id>/", views.playground_session_page, name="session"),
    path("<int:session_id>/rank/", views.playground_send, name="send"),
    path("<int:session_id>/delete/", views.playground_delete, name="delete"),
]
