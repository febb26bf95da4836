"""The host app as the AWS Lambda function runs it: the DynamoDB store, the AWS provider,
workers on AWS Batch, settings from the function's environment (set by the host stack)
and the API key from Secrets Manager."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import boto3

from hyper.host.lambda_adapter import LambdaApp


def make_app() -> LambdaApp:
    """Built once per Lambda container (the adapter calls it on the first event)."""
    from hyper.host.app import create_app
    from hyper.host.service import HostService
    from hyper.host.settings import HostSettings
    from hyper.launchers.base import Launcher
    from hyper.launchers.batch import BatchLauncher
    from hyper.providers.aws.provider import AwsProvider
    from hyper.store.dynamodb import DynamoDBStore

    env = os.environ
    region = env["HYPER_REGION"]
    secret_arn = env["HYPER_SECRET_ARN"]
    key = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_arn)[
        "SecretString"
    ]
    settings = HostSettings(
        data_dir=Path(tempfile.gettempdir()),  # the only place a function may write
        api_key=key,
        name=env["HYPER_HOST_NAME"],
        url=env["HYPER_API_URL"],
    )
    store = DynamoDBStore(env["HYPER_TABLE_PREFIX"], region, env.get("HYPER_BUCKET"))
    provider = AwsProvider(
        store, host_name=settings.name, secret_arn=secret_arn, host_vpc=env.get("HYPER_HOST_VPC")
    )

    def launchers(service: HostService) -> dict[str, Launcher]:
        return {"aws": BatchLauncher(store, url=settings.url, names=provider.names)}

    app = create_app(settings, store, provider=provider, local_defaults=False, launchers=launchers)
    return LambdaApp(app, tick=lambda: app.state.tick())
