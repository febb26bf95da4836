"""The AWS provider: a host that runs serverless, with workers on AWS Batch.

The map (each module one concept; none imported on the qsub path):

- ``templates.py``  CloudFormation generated in Python: the host stack (tables, bucket,
                    API Gateway + API key + usage plan, Lambda, schedule, roles, logs,
                    dashboard) and a region stack (VPC, subnets, endpoints, peering)
- ``stacks.py``     creating, updating and deleting stacks, waiting, reading outputs
- ``bundle.py``     the Lambda code bundle, built from the installed package
- ``batch.py``      clusters, queues, images and definitions as Batch compute
                    environments, job queues, ECR repositories and job definitions
- ``weights.py``    `auto` region weights from EC2 spot placement scores
- ``provider.py``   the AWS provider: each resource kind in every ACTIVE region
- ``host.py``       a host's control plane deployed from the user's machine: the key's
                    secret, the code bucket and bundle, the host stack, credentials

The Batch launcher is ``hyper/launchers/batch.py``; the DynamoDB tables of a host are
``hyper/store/dynamodb_tables.py`` (the store's, which the host template makes); the
host app as the Lambda function builds it is ``hyper/host/lambda_app.py``, beside the
daemon, and its entry point ``hyper/host/lambda_adapter.py``.

Every AWS call goes through plain boto3 clients, so `AWS_ENDPOINT_URL` points them all
at a moto server in end-to-end tests.
"""
