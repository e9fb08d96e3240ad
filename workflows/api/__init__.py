"""sched's REST API (Django REST framework): views, serializers, auth and error mapping."""
