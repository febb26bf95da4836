"""The host's API, one router per resource: jobs, workers, files, workflows, resources
(regions, clusters, queues, images, definitions), the machines of static regions, and
the host itself (health, schema, purge). ``ROUTERS`` is what the app includes."""

from __future__ import annotations

from hyper.host.routes import files, host, jobs, nodes, resources, workers, workflows

ROUTERS = (
    host.router,
    jobs.router,
    workers.router,
    files.router,
    workflows.router,
    resources.router,
    nodes.router,
)
