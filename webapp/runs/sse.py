from django.http import HttpResponse


def run_events(request, run_id):
    return HttpResponse(status=404)
