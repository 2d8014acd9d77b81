"""
Reference floors for `make bench` (bench/run.py serves them on the same pinned CPU as the app):

- hello.py: a raw ASGI app answering every request with a small JSON body, under the same
  gunicorn + uvicorn workers as production: what the server stack alone costs.
- settings.py, urls.py, wsgi.py, asgi.py: a bare Django JSON view, as a fresh `startproject`
  would serve it (default apps and middleware, DEBUG off, no database), under gunicorn sync
  workers (WSGI) and under gunicorn + uvicorn (ASGI): what Django itself costs per request.
- pool.py: the same view as production serves HTTP (messaging_app/wsgi_pool.py under gunicorn +
  uvicorn): what our serving design costs, beside the two above.
"""
