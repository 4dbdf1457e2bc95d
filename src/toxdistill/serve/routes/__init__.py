"""The app's routes, one ``APIRouter`` per concern; ``app.create_app`` includes them all.

``service``: /healthz and /docs. ``api``: the JSON API. ``pages``: the HTML form. ``upload``: batch files.
``cards``: the model cards.
"""
