"""The dashboard: pages the host serves under ``/dashboard``, for people to look at.

- ``login``: single-use login tokens (kept in the store) traded for signed session
  cookies; the API key never appears in a URL.
- ``views``: what each page shows, read from the host's service and store.
- ``router``: the routes, rendering ``templates/`` with the scripts in ``static/``.
- ``proxy``: the page on loopback for a host reached through a private socket (a local
  host), forwarding to it through the host client, for as long as ``hyper dashboard`` runs.
"""
