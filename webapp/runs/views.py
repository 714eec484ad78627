from django.http import HttpResponse


def run_list_page(request):
    return HttpResponse("")


def run_new(request):
    return HttpResponse("")
