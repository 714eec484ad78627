from django.http import HttpResponse


def dataset_list_page(request):
    return HttpResponse("")
