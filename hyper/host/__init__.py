"""The host: the control plane's HTTP API and its services, and the two entry points
that assemble one: the local daemon (``daemon``) and the AWS Lambda function
(``lambda_app`` behind ``lambda_adapter``). ``app`` builds the app from ``middleware``,
the routers of ``routes`` (one per resource), ``deps``, ``lifespan`` and ``ticks``."""
