"""Workers as AWS Batch jobs: one array job of N workers per launch, in the region's job
queue of the queue's cluster, with the definition's job definition.

A launch of N workers is ONE SubmitJob (a single job when N is 1; arrays hold at most
10,000 children, so 25,000 workers are three arrays of 10,000, 10,000 and 5,000). Each
submitted job gets a fresh worker id prefix; its children are workers
``PREFIX-0 .. PREFIX-(N-1)``: the worker takes ``HYPER_WORKER_ID_PREFIX`` from its
environment and appends ``-`` and ``AWS_BATCH_JOB_ARRAY_INDEX``, which Batch sets in each
child (a single job is given its full id, ``PREFIX-0``, as ``HYPER_WORKER_ID``).

What a job is given (containerOverrides environment): the host URL, the queue, the
definition, the worker id (prefix), the idle timeout and the region (``HYPER_REGION``,
which its jobs see too). Never a key: on a host with a worker key, the token of this
submitted job's workers (``HYPER_WORKER_TOKEN``, hyper/worker_tokens.py: alone it opens
nothing), with which they act as themselves and as no worker of another launch. The
worker key (``HYPER_API_KEY``: alone it opens nothing either) is in the job definition's
``secrets``, which the ECS agent reads from Secrets Manager with the host's
worker-secrets execution role as it starts the container, so DescribeJobs (which shows
the overrides to anyone who may read the account's jobs) holds no key. The job role
reads no secret. A host made
before worker keys sets ``HYPER_API_KEY`` in the job definition to the ARN of its
secret, which the worker reads with its job role (see hyper/providers/aws/batch.py).

SubmitJob allows 50 calls a second per account: calls take a token from a bucket filled at
that rate, and a throttled call (TooManyRequestsException and the like) is tried again
after an exponential back-off with jitter.

A queue with `auto` weights spreads its workers over AWS regions by EC2 spot placement
scores (hyper/providers/aws/weights.py), asked at most every 10 minutes. A worker waits
RUNNABLE until its compute environment has an instance for it, so it has 15 minutes to
report for the first time before the scheduler takes it for silent.

`alive` asks DescribeJobs about every submitted job at once (100 a call, arrays by their
parent; ListJobs only for arrays with children ended), at most every 30 s; it knows only
the workers this launcher started (None for others, e.g. after a restart). `stop`
terminates a worker's job (its child of an array).
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from hyper.launchers.base import Launcher, LaunchRequest
from hyper.messages import AWS_TIMINGS, TIMINGS
from hyper.models import ClusterSpec, DefinitionSpec, DeployStatus, QueueSpec, ResourceKind
from hyper.providers.aws.batch import Names
from hyper.providers.aws.calls import aws_client, error_code
from hyper.providers.aws.weights import auto_weights as spot_weights
from hyper.resources import find_spec
from hyper.store.base import Store, WorkerRecord
from hyper.worker_tokens import ENVIRONMENT as TOKEN_ENVIRONMENT
from hyper.worker_tokens import WorkerTokens, worker_group

log = logging.getLogger(__name__)

MAX_ARRAY_SIZE = 10_000  # Batch's limit on the children of one array job
SUBMITS_PER_SECOND = 50.0  # Batch's SubmitJob rate limit
DESCRIBE_BATCH = 100  # job ids per DescribeJobs call
NAMED_JOBS_KEPT = 10_000  # launches a container remembers the Batch job ids of (`_find`)
THROTTLED = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
    }
)
ENDED = frozenset({"SUCCEEDED", "FAILED"})
# The statusReason Batch gives a job whose instance went away under it: a spot instance
# reclaimed (or any EC2 termination), no fault of the worker or its jobs.
HOST_TERMINATED = re.compile(r"^Host EC2 \(instance [^)]*\) terminated")

BatchClients = Callable[[str], Any]  # region -> a Batch client


class TokenBucket:
    """At most `rate` takes a second on average, with bursts of `capacity`."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = capacity if capacity is not None else rate
        self.clock, self.sleep = clock, sleep
        self._tokens = self.capacity
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> None:
        with self._lock:
            while True:
                now = self.clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1 - 1e-9:  # a sleep of exactly the shortfall may fall short
                    self._tokens = max(0.0, self._tokens - 1)
                    return
                self.sleep((1 - self._tokens) / self.rate)


def _boto3_batch(region: str) -> Any:
    """A Batch client whose throttled calls come back to us at once: the launcher's own
    back-off decides when to try again."""
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return aws_client("batch", region, config=config)


class BatchLauncher(Launcher):
    kind = "aws"
    # a Batch job waits RUNNABLE while its compute environment starts instances, often
    # minutes; only then does the worker report in
    startup_seconds = 15 * 60.0
    sizes_workers = True  # containerOverrides size a worker for a job larger than its definition
    # Batch fails the job of a worker whose instance was terminated (a spot reclaim) once
    # ECS has seen the instance go, which may come after the worker's lease ran out: its
    # jobs wait that long for Batch's word before they count as a silent worker's
    confirm_seconds = 300.0

    def __init__(
        self,
        store: Store,
        *,
        url: str,
        names: Names,
        idle_seconds: float = AWS_TIMINGS.idle_seconds,  # a Batch worker is slow to start
        heartbeat_seconds: float = TIMINGS.heartbeat_seconds,
        clients: BatchClients = _boto3_batch,
        submits_per_second: float = SUBMITS_PER_SECOND,
        max_attempts: int = 8,
        backoff_seconds: float = 0.2,
        backoff_cap_seconds: float = 20.0,
        status_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        ec2_clients: Callable[[str], Any] = lambda region: aws_client("ec2", region),
        weights_seconds: float = 600.0,
        worker_key: str = "",
        tokens: WorkerTokens | None = None,
        confirm_seconds: float | None = None,
    ) -> None:
        self.store = store
        # what a worker is given to call the host with: the worker key and its launch's
        # token (none on a host made before them: the job definition names a secret)
        self.worker_key = worker_key
        self.tokens = tokens
        if confirm_seconds is not None:
            self.confirm_seconds = confirm_seconds
        self.url = url
        self.names = names
        self.idle_seconds = idle_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._make_client = clients
        self._clients: dict[str, Any] = {}
        self.bucket = TokenBucket(submits_per_second, clock=clock, sleep=sleep)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_cap_seconds = backoff_cap_seconds
        self.status_seconds = status_seconds
        self.clock, self.sleep, self.jitter = clock, sleep, jitter
        self._jobs: dict[str, tuple[str, str]] = {}  # worker id -> (region, Batch job id)
        # (region, job name) -> Batch job id of the launches a ListJobs named (`_find`)
        self._named: dict[tuple[str, str], str] = {}
        self._alive: dict[str, bool] = {}  # worker id -> what Batch said last
        self._reclaimed: set[str] = set()  # ended workers whose instance was terminated
        # (region, launch's job name) -> when a lookup found no job; worker id -> when stopped
        self._missed: dict[tuple[str, str], float] = {}
        self._stopped: dict[str, float] = {}
        self._looked = -float("inf")
        self._ec2 = ec2_clients
        self.weights_seconds = weights_seconds
        self._weights: dict[tuple[Any, ...], tuple[float, dict[str, int]]] = {}

    def client(self, region: str) -> Any:
        if region not in self._clients:
            self._clients[region] = self._make_client(region)
        return self._clients[region]

    # ---- launching -------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> list[WorkerRecord]:
        """One SubmitJob per 10,000 workers (an array job; a single job for one worker)."""
        target = self._target(request)
        if target is None:
            return []
        records: list[WorkerRecord] = []
        left = request.count
        while left > 0:
            size = min(left, MAX_ARRAY_SIZE)
            prefix = f"b-{uuid.uuid4().hex[:12]}"
            job_id = self._submit(request, target, prefix if size > 1 else f"{prefix}-0", size)
            if job_id is None:
                break
            for index in range(size):
                worker_id = f"{prefix}-{index}"
                self._jobs[worker_id] = (
                    request.region,
                    f"{job_id}:{index}" if size > 1 else job_id,
                )
                records.append(self._record(worker_id, request))
            left -= size
        return records

    def _start(self, worker_id: str, request: LaunchRequest) -> WorkerRecord | None:
        """One worker with the given id, as a single job."""
        target = self._target(request)
        if target is None:
            return None
        job_id = self._submit(request, target, worker_id, 1)
        if job_id is None:
            return None
        self._jobs[worker_id] = (request.region, job_id)
        return self._record(worker_id, request)

    def _target(self, request: LaunchRequest) -> tuple[str, str] | None:
        """(job queue, job definition) of a request."""
        queue = find_spec(self.store, ResourceKind.QUEUE, request.queue, QueueSpec)
        if queue is None:
            log.warning("no queue %r: no Batch workers started for it", request.queue)
            return None
        return (
            self.names.job_queue(queue.compute_environment),
            self.names.job_definition(request.definition.name),
        )

    def submit_request(
        self, request: LaunchRequest, target: tuple[str, str], name: str, size: int
    ) -> dict[str, Any]:
        """The SubmitJob request for `size` workers: an array whose children are workers
        ``NAME-INDEX``, or a single job that is worker NAME."""
        job_queue, job_definition = target
        environment = {
            "HYPER_URL": self.url,
            "HYPER_QUEUE": request.queue,
            "HYPER_DEFINITION": request.definition.name,
            "HYPER_IDLE_SECONDS": f"{self.idle_seconds:g}",
            "HYPER_HEARTBEAT_SECONDS": f"{self.heartbeat_seconds:g}",
            "HYPER_REGION": request.region,
        }
        environment["HYPER_WORKER_ID_PREFIX" if size > 1 else "HYPER_WORKER_ID"] = name
        if self.worker_key and self.tokens is not None:
            # the worker key itself comes from the job definition's secrets (the ECS agent
            # reads it from Secrets Manager): DescribeJobs shows the overrides to anyone
            # allowed to read the account's jobs, and the token alone opens nothing
            group = name if size > 1 else worker_group(name)  # the workers NAME-INDEX
            environment[TOKEN_ENVIRONMENT] = self.tokens.token(group)
        overrides: dict[str, Any] = {}
        if request.shape is not None:  # a worker of a job's own size, larger than the definition's
            shape = request.shape
            environment["HYPER_CAPACITY"] = f"{shape.cpus}:{shape.mem_mib}:" + ",".join(
                shape.gpu_ids
            )
            overrides["resourceRequirements"] = [
                {"type": "VCPU", "value": str(shape.cpus)},
                {"type": "MEMORY", "value": str(shape.mem_mib)},
            ] + ([{"type": "GPU", "value": str(len(shape.gpu_ids))}] if shape.gpu_ids else [])
        submit: dict[str, Any] = {
            "jobName": self.names.worker_job_name(request.queue, request.definition.name, name),
            "jobQueue": job_queue,
            "jobDefinition": job_definition,
            "containerOverrides": {
                "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
                **overrides,
            },
            # the host's tag: the API function may stop only jobs that carry it
            "tags": self.names.tags(),
        }
        if size > 1:
            submit["arrayProperties"] = {"size": size}
        return submit

    def _submit(
        self, request: LaunchRequest, target: tuple[str, str], name: str, size: int
    ) -> str | None:
        """Submit, backing off while Batch throttles; the job id, or None when Batch would
        not take it (the scheduler asks again on its next tick)."""
        submit = self.submit_request(request, target, name, size)
        client = self.client(request.region)
        for attempt in range(self.max_attempts):
            self.bucket.take()
            try:
                return str(client.submit_job(**submit)["jobId"])
            except Exception as error:
                code = error_code(error)
                if code not in THROTTLED or attempt == self.max_attempts - 1:
                    log.warning(
                        "%s: submitting %d workers of %s/%s failed: %s",
                        request.region,
                        size,
                        request.queue,
                        request.definition.name,
                        error,
                    )
                    return None
                self.sleep(self.backoff(attempt))
        return None

    def backoff(self, attempt: int) -> float:
        """Exponential back-off with jitter: half the step for sure, the other half random."""
        step = min(self.backoff_cap_seconds, self.backoff_seconds * 2**attempt)
        return step / 2 + self.jitter(0, step / 2)

    # ---- capacity, liveness, stopping ------------------------------------------------------

    def capacity(self, region: str, definition: str) -> int | None:
        """Workers of `definition` that still fit in the region: the vCPUs of every ACTIVE
        cluster there, less what this launcher's live workers hold."""
        wanted = find_spec(self.store, ResourceKind.DEFINITION, definition, DefinitionSpec)
        if wanted is None:
            return None
        total = sum(
            ClusterSpec.model_validate(r.spec).max_vcpus
            for r in self.store.list_resources(ResourceKind.CLUSTER.value)
            if r.status == DeployStatus.ACTIVE.value
        )
        vcpus: dict[str, int] = {}
        used = 0
        for worker in self.store.live_workers():
            if worker.launcher != self.kind or worker.region != region:
                continue
            if worker.definition not in vcpus:
                spec = find_spec(
                    self.store, ResourceKind.DEFINITION, worker.definition, DefinitionSpec
                )
                vcpus[worker.definition] = spec.vcpus if spec else 1
            used += vcpus[worker.definition]
        return max(0, (total - used) // wanted.vcpus)

    def auto_weights(self, regions: list[str], cluster: ClusterSpec) -> dict[str, int]:
        """Weights from EC2 spot placement scores of the cluster's instance types, asked
        at most every `weights_seconds` for the same regions and cluster."""
        key = (tuple(sorted(regions)), tuple(cluster.instance_list), cluster.max_vcpus)
        at, found = self._weights.get(key, (-float("inf"), {}))
        if self.clock() - at > self.weights_seconds:
            found = spot_weights(
                sorted(regions), cluster, ec2=self._ec2(sorted(regions)[0]), log=log.info
            )
            self._weights[key] = (self.clock(), found)
        return found

    def _find(self, worker: WorkerRecord) -> bool:
        """Whether the worker's Batch job is known here, looking it up by name when another
        container (or an earlier one) launched it: any container's tick can then see and
        stop a worker stuck RUNNABLE. One ListJobs (by the launch's name) finds every
        worker of an array, so a tick asks Batch once per array, not once per worker
        (Batch allows 50 calls a second per account and region). A miss is asked again
        after `status_seconds`."""
        if worker.id in self._jobs:
            return True
        stopped = self._stopped.get(worker.id)
        if stopped is not None:
            if self.clock() - stopped < self.status_seconds:
                return False
            del self._stopped[worker.id]
        queue = find_spec(self.store, ResourceKind.QUEUE, worker.queue, QueueSpec)
        prefix, _, index = worker.id.rpartition("-")
        if queue is None or not prefix or not index.isdigit():
            return False
        array = self.names.worker_job_name(worker.queue, worker.definition, prefix)
        single = self.names.worker_job_name(worker.queue, worker.definition, worker.id)
        if not self._known(worker, array, single, index):
            launch = (worker.region, array)
            missed = self._missed.get(launch)
            if missed is not None and self.clock() - missed < self.status_seconds:
                return False
            self._missed[launch] = self.clock()
            if len(self._named) > NAMED_JOBS_KEPT:  # a long-lived container forgets old ones
                self._named.clear()
            self.bucket.take()
            try:
                pages = (
                    self.client(worker.region)
                    .get_paginator("list_jobs")
                    .paginate(
                        jobQueue=self.names.job_queue(queue.compute_environment),
                        filters=[{"name": "JOB_NAME", "values": [f"{array}*"]}],
                    )
                )
                for page in pages:
                    for job in page["jobSummaryList"]:
                        if ":" not in str(job["jobId"]):  # not an array's child
                            self._named[(worker.region, str(job.get("jobName")))] = str(
                                job["jobId"]
                            )
            except Exception as error:
                log.info("%s: looking up the job of worker %s failed: %s", worker.region,
                         worker.id, error)  # fmt: skip
                return False
            if not self._known(worker, array, single, index):
                return False
            for sibling in self.store.live_workers():  # its array's others: one look for all
                head, _, at = sibling.id.rpartition("-")
                if (head, sibling.region, sibling.queue, sibling.definition) == (
                    prefix,
                    worker.region,
                    worker.queue,
                    worker.definition,
                ) and sibling.id not in self._stopped:
                    own = self.names.worker_job_name(sibling.queue, sibling.definition, sibling.id)
                    self._known(sibling, array, own, at)
        self._missed.pop((worker.region, array), None)
        return True

    def _known(self, worker: WorkerRecord, array: str, single: str, index: str) -> bool:
        """Whether a ListJobs of this container named the worker's Batch job (its array's,
        or its own when it was launched alone); noted in `_jobs` when it did."""
        parent = self._named.get((worker.region, array))
        if parent is not None:  # a single job's name ends with -0: never the array's
            self._jobs[worker.id] = (worker.region, f"{parent}:{index}")
        elif (worker.region, single) in self._named:
            self._jobs[worker.id] = (worker.region, self._named[(worker.region, single)])
        return worker.id in self._jobs

    def alive(self, worker: WorkerRecord) -> bool | None:
        """What Batch says of the worker's job, read for all known workers at once (at most
        every `status_seconds`); None for a worker whose Batch job cannot be found."""
        if not self._find(worker):
            return None
        if worker.id not in self._alive or self.clock() - self._looked > self.status_seconds:
            self._look()
        found = self._alive.get(worker.id)
        if found is False:  # ended: nothing more to ask about it
            self._jobs.pop(worker.id, None)
            self._alive.pop(worker.id, None)
        return found

    def _look(self) -> None:
        """DescribeJobs on the submitted jobs (100 a call, arrays by their parent); for an
        array with some children ended, ListJobs of its ended children."""
        self._looked = self.clock()
        self._alive.clear()
        by_job: dict[tuple[str, str], list[tuple[str, int | None]]] = {}
        for worker_id, (region, job_id) in self._jobs.items():
            parent, _, index = job_id.partition(":")
            by_job.setdefault((region, parent), []).append(
                (worker_id, int(index) if index else None)
            )
        regions = sorted({region for region, _ in by_job})
        for region in regions:
            parents = sorted(parent for r, parent in by_job if r == region)
            client = self.client(region)
            for start in range(0, len(parents), DESCRIBE_BATCH):
                try:
                    jobs = client.describe_jobs(jobs=parents[start : start + DESCRIBE_BATCH])
                except Exception as error:
                    log.info("%s: DescribeJobs failed: %s", region, error)
                    continue
                for job in jobs["jobs"]:
                    workers = by_job.get((region, job["jobId"]), [])
                    self._note(client, job, workers)

    def look_again(self, worker: WorkerRecord) -> None:
        """The next `alive` asks Batch (DescribeJobs) whatever it said lately: a worker's
        lease ran out, and how its job ended decides whether that costs a retry."""
        self._looked = -float("inf")

    def reclaimed(self, worker: WorkerRecord) -> bool:
        """Whether Batch said the worker's job failed as its EC2 instance was terminated
        (asked once, after `alive` found it ended)."""
        if worker.id in self._reclaimed:
            self._reclaimed.discard(worker.id)
            return True
        return False

    def _note(
        self, client: Any, job: dict[str, Any], workers: list[tuple[str, int | None]]
    ) -> None:
        status = job.get("status", "")
        summary = (job.get("arrayProperties") or {}).get("statusSummary") or {}
        ended_children = sum(int(summary.get(s, 0)) for s in ENDED)
        if not summary or not ended_children:
            for worker_id, _ in workers:
                self._alive[worker_id] = status not in ENDED
                if HOST_TERMINATED.match(str(job.get("statusReason", ""))):
                    self._reclaimed.add(worker_id)
            return
        # an array with children ended: which (every one, when the array ended), and
        # which of those failed as their instance was terminated
        if status in ENDED:
            states: tuple[str, ...] = ("FAILED",) if int(summary.get("FAILED", 0)) else ()
        else:
            states = tuple(sorted(ENDED))
        ended: set[int] = set()
        lost: set[int] = set()
        try:
            for state in states:
                pages = client.get_paginator("list_jobs").paginate(
                    arrayJobId=job["jobId"], jobStatus=state
                )
                for page in pages:
                    for child in page["jobSummaryList"]:
                        index = (child.get("arrayProperties") or {}).get("index")
                        if index is None:
                            index = int(str(child["jobId"]).rpartition(":")[2])
                        ended.add(int(index))
                        if HOST_TERMINATED.match(str(child.get("statusReason", ""))):
                            lost.add(int(index))
        except Exception as error:
            log.info("ListJobs of %s failed: %s", job["jobId"], error)
            if status not in ENDED:
                return
        for worker_id, index in workers:
            self._alive[worker_id] = status not in ENDED and index not in ended
            if index in lost:
                self._reclaimed.add(worker_id)

    def stop(self, worker: WorkerRecord) -> None:
        """Terminate a stuck worker's job (its child of an array), whichever container
        launched it."""
        self._find(worker)
        found = self._jobs.pop(worker.id, None)
        self._alive.pop(worker.id, None)
        now = self.clock()
        if len(self._stopped) > NAMED_JOBS_KEPT:  # those stopped long ago are not asked of
            self._stopped = {
                k: t for k, t in self._stopped.items() if now - t < self.status_seconds
            }
        self._stopped[worker.id] = now  # not looked up again for a while
        if found is None:
            return
        region, job_id = found
        try:
            self.client(region).terminate_job(jobId=job_id, reason="hyper: worker stopped")
        except Exception as error:
            log.warning("%s: terminating %s failed: %s", region, job_id, error)

    def close(self) -> None:
        self._jobs.clear()
        self._alive.clear()
        self._clients.clear()
